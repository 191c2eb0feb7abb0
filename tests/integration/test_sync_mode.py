"""Synchronous persist mode against real MariaDB and Redis: a seq whose write has an unknown
outcome is never given to another message, and a message stored after its room's lease lapsed
is still published, once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis

from shared import keys
from shared.store import Store
from tests.conftest import Client, MariaDB, RedisServer, join, send_acked, wait_until

from .test_persister import rows

pytestmark = pytest.mark.anyio

SHARDS = 48  # CHAT_SHARDS, as the gateways run here
COMMIT = b"\x03COMMIT"  # a COM_QUERY packet's payload: what pymysql sends to commit


class CommitCutter:
    """A TCP proxy between the gateways and MariaDB. Once armed, it forwards the next ``COMMIT``,
    reads MariaDB's answer (so the commit has happened) and, instead of passing it on, cuts the
    gateway's connection: the commit succeeded, and the gateway cannot know it.

    With ``down_after_cut`` it then refuses the database to everyone until :meth:`up`.
    """

    def __init__(self, mariadb: MariaDB) -> None:
        self.mariadb = mariadb
        self.armed = False
        self.down_after_cut = False
        self.down = False
        self.cut = asyncio.Event()
        self._links: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()  # one per connection, awaited at exit
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CommitCutter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_links()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, database: str) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"mysql+pymysql://root@127.0.0.1:{port}/{database}?charset=utf8mb4"

    def up(self) -> None:
        self.down = False

    def _abort_links(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        if self.down:
            client_w.transport.abort()
            return
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.mariadb.port)
        self._links.update((client_w, server_w))
        cutting = asyncio.Event()  # set just before the armed COMMIT is forwarded
        pumps = [
            asyncio.create_task(self._requests(client_r, server_w, cutting)),
            asyncio.create_task(self._answers(server_r, client_w, cutting)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                self._links.discard(writer)
                writer.transport.abort()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cutting: asyncio.Event
    ) -> None:
        """Gateway → MariaDB, packet by packet (a 3-byte length, a sequence byte, the payload):
        a client waits for each answer before its next command."""
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:3], "little"):
                size = 4 + int.from_bytes(buffer[:3], "little")
                packet, buffer = buffer[:size], buffer[size:]
                if self.armed and packet[4:] == COMMIT:
                    self.armed = False
                    cutting.set()
                writer.write(packet)
                await writer.drain()

    async def _answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cutting: asyncio.Event
    ) -> None:
        """MariaDB → gateway; the answer to the armed COMMIT is read, then the link is cut."""
        while data := await reader.read(65536):
            if cutting.is_set():
                if self.down_after_cut:
                    self.down = True
                    self._abort_links()
                self.cut.set()
                return
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def sync_gateway_via(stack: Any, mariadb: MariaDB) -> AsyncIterator[tuple[Any, Any]]:
    """A sync-mode gateway whose database connections go through a :class:`CommitCutter`."""
    Store(stack.url).migrate()  # a persister would do this; sync mode needs none
    async with CommitCutter(mariadb) as proxy:
        # Started from a thread: its start (migration, readiness) goes through the proxy,
        # which runs on this event loop.
        gateway = await asyncio.to_thread(
            stack.gateway, chat_persist_mode="sync", chat_database_url=proxy.url(stack.database)
        )
        yield gateway, proxy


async def answer(client: Client, cid: str) -> dict[str, Any]:
    """The answer to a send with ``cid``: its echo or its error (other events stay unread)."""
    others: list[dict[str, Any]] = []
    try:
        while True:
            event = await client.next(timeout=30)
            if event.get("cid") == cid and event["type"] in ("message", "error"):
                return event
            others.append(event)
    finally:
        client.unread(others)


def logged(redis_url: str, room: str) -> dict[int, str]:
    """seq → text of the room's Redis log."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = client.xrange(keys.log(room, SHARDS))
    finally:
        client.close()
    return {e["seq"]: e["text"] for e in (orjson.loads(f["e"]) for _, f in entries)}


def assert_one_text_per_seq(
    stack: Any, mariadb: MariaDB, redis_url: str, room: str, seen: list[dict[str, Any]]
) -> dict[int, str]:
    """Clients, the Redis log and MySQL agree on each seq's text; returns seq → text."""
    stored = rows(mariadb, stack.database, room)
    in_mysql = {seq: text for _, seq, _, text in stored}
    in_redis = logged(redis_url, room)
    by_clients: dict[int, set[str]] = {}
    for message in seen:
        by_clients.setdefault(message["seq"], set()).add(message["text"])
    assert {seq: texts for seq, texts in by_clients.items() if len(texts) > 1} == {}
    assert {seq: texts.pop() for seq, texts in by_clients.items()} == in_redis == in_mysql
    assert len(in_mysql) == len(stored)
    # No message was ever written under a seq another message holds.
    assert mariadb.query(stack.database, "SELECT seq, content FROM message_conflict") == []
    return in_mysql


async def test_a_commit_whose_answer_is_lost_keeps_its_seq(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    # MariaDB commits A, the answer never reaches the gateway. A's seq must not go to B (whose
    # insert would then be a no-op: everyone would read B under a seq whose stored text is A).
    async with sync_gateway_via(stack, mariadb) as (gateway, proxy):
        alice = await join(gateway, "alice", "lost")
        bob = await join(gateway, "bob", "lost")
        await send_acked(alice, "lost", "first", "c1")

        proxy.armed = True
        await alice.send(type="send", room="lost", text="A", cid="cA")
        await asyncio.wait_for(proxy.cut.wait(), 30)
        # The gateway settles the unknown outcome at once (the same idempotent insert again):
        # A keeps its seq and is echoed.
        a_answer = await answer(alice, "cA")
        b_echo = await send_acked(bob, "lost", "B", "cB")
        again = await send_acked(alice, "lost", "A", "cA")  # a client's resend: the original

        seen = await bob.messages("lost", 3)
        text_of = assert_one_text_per_seq(stack, mariadb, redis_server.url, "lost", seen)
        assert sorted(text_of.values()) == ["A", "B", "first"]  # each stored once
        assert a_answer["type"] == "message" and a_answer["text"] == "A"
        assert again["seq"] == a_answer["seq"] != b_echo["seq"]
        assert [m["seq"] for m in seen] == [1, 2, 3]


async def test_a_write_of_unknown_outcome_is_completed_by_the_next_sender(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    # As above, but the database stays unreachable right after the lost answer: the gateway
    # cannot settle A, answers `unavailable` and leaves A's reservation to be completed. The
    # next sender, once the database is back, stores A (a no-op: it is there) and publishes it
    # under its seq before taking the next seq for its own message.
    async with sync_gateway_via(stack, mariadb) as (gateway, proxy):
        alice = await join(gateway, "alice", "later")
        bob = await join(gateway, "bob", "later")
        await send_acked(alice, "later", "first", "c1")

        proxy.armed = proxy.down_after_cut = True
        await alice.send(type="send", room="later", text="A", cid="cA")
        await asyncio.wait_for(proxy.cut.wait(), 30)
        assert (await answer(alice, "cA"))["code"] == "unavailable"
        await bob.send(type="send", room="later", text="B", cid="cB")
        assert (await answer(bob, "cB"))["code"] == "unavailable"  # A cannot be settled yet
        proxy.up()

        b_echo = await send_acked(bob, "later", "B", "cB")
        a_echo = await alice.expect("message", cid="cA")  # published by bob's send
        again = await send_acked(alice, "later", "A", "cA")

        seen = await bob.messages("later", 3)
        text_of = assert_one_text_per_seq(stack, mariadb, redis_server.url, "later", seen)
        assert sorted(text_of.values()) == ["A", "B", "first"]
        assert a_echo["seq"] == again["seq"] == 2 and b_echo["seq"] == 3
        assert [m["seq"] for m in seen] == [1, 2, 3]


def waiting_inserts(mariadb: MariaDB, database: str) -> int:
    """How many message inserts into ``database`` are running (here: waiting for a lock)."""
    [(count,)] = mariadb.query(
        "information_schema",
        "SELECT COUNT(*) FROM PROCESSLIST"
        " WHERE DB = %s AND INFO LIKE 'INSERT IGNORE INTO message%%'",
        database,
    )
    return int(count)


async def test_a_message_stored_after_its_lease_lapsed_is_published_once(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    # A's insert waits on a table lock longer than the room's lease (10 s). Meanwhile B, on
    # another gateway, finds the room's lease lapsed. When the table is unlocked, A is stored and
    # published once under its seq, echoed to alice, and B follows it.
    Store(stack.url).migrate()
    gw_a = stack.gateway(chat_persist_mode="sync")
    gw_b = stack.gateway(chat_persist_mode="sync")
    alice = await join(gw_a, "alice", "slow")
    bob = await join(gw_b, "bob", "slow")
    await send_acked(alice, "slow", "first", "c1")

    locker = mariadb.connect(stack.database)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES message WRITE")
        await alice.send(type="send", room="slow", text="A", cid="cA")
        await asyncio.to_thread(
            wait_until, lambda: waiting_inserts(mariadb, stack.database) == 1, 30, "A's insert"
        )
        await bob.send(type="send", room="slow", text="B", cid="cB")
        # B's gateway gets past the room's lock only once A's lease lapsed.
        await asyncio.to_thread(
            wait_until, lambda: waiting_inserts(mariadb, stack.database) == 2, 40, "B's insert"
        )
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
    finally:
        locker.close()

    a_echo = await alice.expect("message", timeout=30, cid="cA")
    seen = await bob.messages("slow", 3, timeout=30)
    again = await send_acked(alice, "slow", "A", "cA")  # the resend: the original, no new row

    text_of = assert_one_text_per_seq(stack, mariadb, redis_server.url, "slow", [*seen, a_echo])
    assert sorted(text_of.values()) == ["A", "B", "first"]
    assert [(m["seq"], m["text"]) for m in seen] == [(1, "first"), (2, "A"), (3, "B")]
    assert a_echo["seq"] == again["seq"] == 2


async def test_a_seq_the_database_holds_for_another_message_is_skipped(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    # A row written outside the seq rule already holds the room's next seq: the message is not
    # published under it (a seq never shows two texts), the seq is burned, and a client that sees
    # the jump recovers the seq's stored message with `join since`.
    Store(stack.url).migrate()
    gateway = stack.gateway(chat_persist_mode="sync")
    alice = await join(gateway, "alice", "burnt")
    bob = await join(gateway, "bob", "burnt")
    await send_acked(alice, "burnt", "first", "c1")
    mariadb.query(
        stack.database,
        "INSERT INTO message (room_id, seq, sender_id, content, created_at)"
        " VALUES ('burnt', 2, 'mallory', 'written elsewhere', NOW())",
    )

    await alice.send(type="send", room="burnt", text="A", cid="cA")
    assert (await answer(alice, "cA"))["code"] == "unavailable"
    echo = await send_acked(alice, "burnt", "A", "cA")
    assert echo["seq"] == 3

    assert [m["seq"] for m in await bob.messages("burnt", 2)] == [1, 3]  # a jump: recover
    await bob.send(type="join", room="burnt", since=1)
    joined = await bob.expect("joined", room="burnt")
    assert joined["recovered"] is True
    assert [(m["seq"], m["text"]) for m in joined["messages"]] == [
        (2, "written elsewhere"),
        (3, "A"),
    ]
    assert logged(redis_server.url, "burnt") == {1: "first", 3: "A"}
    stored = {seq: text for _, seq, _, text in rows(mariadb, stack.database, "burnt")}
    assert stored == {1: "first", 2: "written elsewhere", 3: "A"}
