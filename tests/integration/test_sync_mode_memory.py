"""Synchronous persist mode with the memory broker (the embedded server's, ``CHAT_BROKER=memory``)
against real MariaDB: a seq whose write has an unknown outcome is never given to another
message (docs/architecture.md "Synchronous persist mode")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.broker_memory import MemoryBroker
from shared.errors import Unavailable
from shared.store import CommitUnknown, Store
from tests.conftest import FakeClock, MariaDB, join, send_acked

from .test_persister import rows
from .test_sync_mode import CommitCutter, answer

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def memory_gateway_via(
    start_server: Any, mariadb: MariaDB, mysql_url: str
) -> AsyncIterator[tuple[Any, CommitCutter, str]]:
    """A sync-mode memory-broker gateway whose database connections go through a
    :class:`CommitCutter`; yields it, the proxy and the database's name."""
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    Store(mysql_url).migrate()
    async with CommitCutter(mariadb) as proxy:
        # Started from a thread: its start goes through the proxy, which runs on this loop.
        gateway = await asyncio.to_thread(
            start_server,
            module="gateway",
            chat_broker="memory",
            chat_persist_mode="sync",
            chat_database_url=proxy.url(database),
        )
        yield gateway, proxy, database


async def test_a_write_of_unknown_outcome_keeps_its_seq_in_the_memory_broker(
    start_server: Any, mariadb: MariaDB, mysql_url: str
) -> None:
    # MariaDB commits A, the answer never reaches the gateway, and the database is unreachable
    # right after: A cannot be settled at once and is answered `unavailable`, but its seq stays
    # A's. B's send, once the database is back, stores A again (a no-op), publishes it under
    # its seq, then takes the next seq; A's resend gets the original.
    async with memory_gateway_via(start_server, mariadb, mysql_url) as (gateway, proxy, db):
        alice = await join(gateway, "alice", "mem")
        bob = await join(gateway, "bob", "mem")
        await send_acked(alice, "mem", "first", "c1")

        proxy.armed = proxy.down_after_cut = True
        await alice.send(type="send", room="mem", text="A", cid="cA")
        await asyncio.wait_for(proxy.cut.wait(), 30)
        assert (await answer(alice, "cA"))["code"] == "unavailable"
        await bob.send(type="send", room="mem", text="B", cid="cB")
        assert (await answer(bob, "cB"))["code"] == "unavailable"  # A cannot be settled yet
        proxy.up()

        b_echo = await send_acked(bob, "mem", "B", "cB")
        in_mysql = {seq: text for _, seq, _, text in rows(mariadb, db, "mem")}
        assert in_mysql[b_echo["seq"]] == "B", f"B echoed as #{b_echo['seq']}, stored: {in_mysql}"
        a_echo = await alice.expect("message", cid="cA")  # published by bob's send
        again = await send_acked(alice, "mem", "A", "cA")  # the resend: the original

        seen = await bob.messages("mem", 3)
        by_clients: dict[int, set[str]] = {}
        for message in [*seen, a_echo, b_echo, again]:
            by_clients.setdefault(message["seq"], set()).add(message["text"])
        stored = rows(mariadb, db, "mem")
        in_mysql = {seq: text for _, seq, _, text in stored}
        assert len(in_mysql) == len(stored)
        assert by_clients == {1: {"first"}, 2: {"A"}, 3: {"B"}}
        assert in_mysql == {1: "first", 2: "A", 3: "B"}
        assert [(m["seq"], m["text"]) for m in seen] == [(1, "first"), (2, "A"), (3, "B")]
        assert a_echo["seq"] == again["seq"] == 2 != b_echo["seq"]
        assert mariadb.query(db, "SELECT seq, content FROM message_conflict") == []


async def test_a_resend_settles_its_own_write_of_unknown_outcome(
    start_server: Any, mariadb: MariaDB, mysql_url: str
) -> None:
    # As above, but the next publish in the room is A's own resend: it settles A and gets it
    # back under its seq, once.
    async with memory_gateway_via(start_server, mariadb, mysql_url) as (gateway, proxy, db):
        alice = await join(gateway, "alice", "own")
        await send_acked(alice, "own", "first", "c1")

        proxy.armed = proxy.down_after_cut = True
        await alice.send(type="send", room="own", text="A", cid="cA")
        await asyncio.wait_for(proxy.cut.wait(), 30)
        assert (await answer(alice, "cA"))["code"] == "unavailable"
        proxy.up()

        again = await send_acked(alice, "own", "A", "cA")
        b_echo = await send_acked(alice, "own", "B", "cB")

        assert (again["seq"], again["text"], b_echo["seq"]) == (2, "A", 3)
        in_mysql = {seq: text for _, seq, _, text in rows(mariadb, db, "own")}
        assert in_mysql == {1: "first", 2: "A", 3: "B"}
        assert mariadb.query(db, "SELECT seq, content FROM message_conflict") == []


class FailingStore(Store):
    """A SQLite store whose next writes fail as ``failures`` says: ``"lost"`` commits and then
    raises :class:`CommitUnknown` (the answer was lost), ``"down"`` raises before writing."""

    failures: list[str]

    def write(
        self,
        entries: Iterable[Mapping[str, Any]],
        on_conflict: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> int:
        failure = self.failures.pop(0) if self.failures else None
        if failure == "down":
            raise ConnectionRefusedError("the database is down")
        written = super().write(entries, on_conflict)
        if failure == "lost":
            raise CommitUnknown("the commit's answer was lost")
        return written


async def test_a_room_whose_write_is_unknown_is_not_pruned(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A pruned room's seq is read back from the store: A's row (committed, unknown to the broker)
    # would be skipped and never published. The room is kept while A is pending.
    store = FailingStore(f"sqlite:///{tmp_path / 'chat.db'}")
    store.migrate()
    store.failures = []
    broker = MemoryBroker(
        log_size=10, cid_window_s=60, store=store, clock=clock, sync=True, idle_ttl_s=60
    )
    await broker.start(lambda room, seq, ts, data: None)
    try:
        store.failures = ["lost", "down"]
        with pytest.raises(Unavailable):
            await broker.publish("r", "alice", "A", "cA")
        clock.now += 120
        await broker.publish("other", "bob", "x", "cx")  # prunes the idle rooms
        assert "r" in broker._seq

        b = await broker.publish("r", "bob", "B", "cB")  # settles A first
        again = await broker.publish("r", "alice", "A", "cA")
        assert (b.message["seq"], b.duplicate) == (2, False)
        assert (again.message["seq"], again.message["text"], again.duplicate) == (1, "A", True)
        assert [(m["seq"], m["text"]) for m in store.history("r", None, 10)[0]] == [
            (1, "A"),
            (2, "B"),
        ]
    finally:
        store.close()
