"""Outbound queues: slow consumers are cut off (4008) without holding others; frames coalesce."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import Client, join

pytestmark = pytest.mark.anyio


async def test_client_that_stops_reading_is_closed_4008_others_keep_receiving(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    server = start_server(
        chat_max_backlog_events=100,
        chat_rate_per_s=100000,
        chat_rate_burst=100000,
        chat_user_rate_per_s=100000,
        chat_user_rate_burst=100000,
    )
    watcher = await join(server, "watcher", "busy")
    sender = await join(server, "sender", "busy")
    # A tiny receive buffer makes the slow client's TCP window fill quickly.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = await Client.connect(f"{server.ws_url}?user=slow&room=busy", sock=sock, max_queue=1)
    await slow.expect("joined", room="busy")
    await watcher.expect("presence", room="busy", joined=["slow"])

    text = "x" * 3900
    seqs: list[int] = []
    evicted = False
    while not evicted:
        assert len(seqs) < 20000, "the slow client was never cut off"
        # Small rounds keep the sender's and the watcher's own backlogs far below the limit.
        for _ in range(20):
            await sender.send(type="send", room="busy", text=text)
        await sender.messages("busy", 20)
        got = 0
        while got < 20:
            event = await watcher.next()
            if event["type"] == "message":
                seqs.append(event["seq"])
                got += 1
            elif event["type"] == "presence" and event["left"] == ["slow"]:
                evicted = True
    print(f"slow client cut off after {len(seqs)} messages")
    # The watcher got every message, in order, while the slow client was being cut off.
    assert seqs == list(range(1, len(seqs) + 1))
    # Once the slow client reads again, it drains what was already in flight, then sees 4008.
    assert await slow.closed(timeout=60) == 4008


async def test_events_pending_together_leave_in_one_array_frame(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    # A long coalescing window makes the batching observable without depending on timing.
    server = start_server(chat_coalesce_ms=500)
    alice = await join(server, "alice", "burst")
    bob = await join(server, "bob", "burst")
    for n in range(10):
        await alice.send(type="send", room="burst", text=str(n))
    messages = await bob.messages("burst", 10)
    assert [m["text"] for m in messages] == [str(n) for n in range(10)]
    arrays = [f for f in bob.frames if isinstance(f, list)]
    assert arrays and max(len(f) for f in arrays) > 1
