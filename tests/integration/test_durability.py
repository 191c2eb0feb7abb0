"""Storage in embedded mode: graceful shutdown flushes, and messages survive a restart."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Client, http_get, join, wait_until

pytestmark = pytest.mark.anyio


# Nothing reaches the database on its own before shutdown: batches are huge and slow.
HELD_BACK = {
    "chat_batch_size": 100000,
    "chat_flush_interval_ms": 3600000,
    "chat_rate_burst": 1000,
    "chat_user_rate_burst": 1000,
}


async def sent_and_echoed(server: Any, room: str, count: int) -> Client:
    """alice in ``room`` sent ``count`` messages (``m0``...) and saw every echo."""
    alice = await join(server, "alice", room)
    for n in range(count):
        await alice.send(type="send", room=room, text=f"m{n}", cid=f"c{n}")
    await alice.messages(room, count)
    return alice


def stored(data_dir: Path, room: str) -> list[tuple[int, str, str]]:
    with sqlite3.connect(data_dir / "chat.db") as db:
        return db.execute(
            "SELECT seq, sender_id, content FROM message WHERE room_id = ? ORDER BY seq", (room,)
        ).fetchall()


async def test_graceful_shutdown_closes_1001_and_flushes_everything(
    start_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    server = start_server(**HELD_BACK)
    alice = await sent_and_echoed(server, "keep", 50)
    # uvicorn re-raises the signal after its graceful shutdown; the rows below prove the flush.
    assert await asyncio.to_thread(server.stop, signal.SIGTERM) in (0, -signal.SIGTERM)
    assert await alice.closed() == 1001
    rows = stored(tmp_path, "keep")
    assert rows == [(n + 1, "alice", f"m{n}") for n in range(50)]
    with sqlite3.connect(tmp_path / "chat.db") as db:
        member = db.execute(
            "SELECT exited_at IS NOT NULL FROM chat_participant"
            " WHERE room_id = 'keep' AND user_id = 'alice'"
        ).fetchone()
    assert member == (1,)


async def test_sigint_is_graceful_too(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(chat_flush_interval_ms=3600000, chat_batch_size=100000)
    alice = await join(server, "alice", "int")
    await alice.send(type="send", room="int", text="bye")
    await alice.messages("int", 1)
    assert await asyncio.to_thread(server.stop, signal.SIGINT) in (0, -signal.SIGINT)
    assert await alice.closed() == 1001
    assert stored(tmp_path, "int") == [(1, "alice", "bye")]


async def test_a_second_ctrl_c_still_flushes_every_acknowledged_message(
    start_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # Ctrl-C twice (an impatient user, or make and a terminal both forwarding it): uvicorn's
    # "force quit" skips its waits, but the echoed messages must still reach the database.
    server = start_server(**HELD_BACK)
    await sent_and_echoed(server, "twice", 20)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    server.proc.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(server.stop, signal.SIGINT) in (0, -signal.SIGINT)
    assert stored(tmp_path, "twice") == [(n + 1, "alice", f"m{n}") for n in range(20)]


async def test_messages_survive_a_restart(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(chat_recent_log_size=10, chat_rate_burst=1000, chat_user_rate_burst=1000)
    alice = await join(server, "alice", "durable")
    for n in range(1, 31):
        await alice.send(type="send", room="durable", text=f"m{n}")
    await alice.messages("durable", 30)
    await asyncio.to_thread(server.stop)

    server = start_server(chat_recent_log_size=10, chat_rate_burst=1000, chat_user_rate_burst=1000)
    status, body = http_get(f"{server.url}/api/rooms")
    assert status == 200
    assert {"room": "durable", "online": 0, "last_seq": 30} in orjson.loads(body)
    bob = await join(server, "bob")
    await bob.send(type="join", room="durable", since=5)
    joined = await bob.expect("joined", room="durable")
    assert joined["recovered"] and [m["seq"] for m in joined["messages"]] == list(range(6, 31))
    await bob.send(type="send", room="durable", text="after restart")
    assert (await bob.expect("message", room="durable"))["seq"] == 31
    # Pages older than the in-memory log come from the database.
    for n in range(32, 46):
        await bob.send(type="send", room="durable", text=f"m{n}")
    await bob.messages("durable", 14)
    wait_until(lambda: len(stored(tmp_path, "durable")) == 45, what="the persister to catch up")
    await bob.send(type="history", room="durable", before=40, limit=20)
    page = await bob.expect("history", room="durable")
    assert [m["seq"] for m in page["messages"]] == list(range(20, 40)) and page["more"]
    assert page["messages"][0]["text"] == "m20"
