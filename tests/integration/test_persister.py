"""The persister service against real Redis and MariaDB: exactly-once rows through crashes,
replicas and database outages."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
import redis

from shared import events, keys
from tests.conftest import ChatServer, MariaDB, RedisServer, http_get, join, wait_until

pytestmark = pytest.mark.anyio


def rows(mariadb: MariaDB, database: str, room: str | None = None) -> list[tuple[Any, ...]]:
    sql = "SELECT room_id, seq, sender_id, content FROM message"
    if room is not None:
        return mariadb.query(database, sql + " WHERE room_id = %s ORDER BY seq", room)
    return mariadb.query(database, sql + " ORDER BY room_id, seq")


def wait_rows(mariadb: MariaDB, database: str, count: int, timeout: float = 60) -> None:
    def enough() -> bool:
        try:
            return len(rows(mariadb, database)) >= count
        except Exception:
            return False

    wait_until(enough, timeout, f"{count} rows")


async def send_many(server: ChatServer, user: str, room: str, count: int, tag: str = "") -> None:
    client = await join(server, user, room)
    for n in range(count):
        await client.send(type="send", room=room, text=f"{tag}{n}", cid=f"{tag}{user}-{n}")
    messages = await client.messages(room, count, timeout=60)
    assert len({m["seq"] for m in messages}) == count
    await client.close()


def assert_exactly_once(mariadb: MariaDB, database: str, expected: dict[str, int]) -> None:
    stored = rows(mariadb, database)
    for room, count in expected.items():
        seqs = [r[1] for r in stored if r[0] == room]
        assert seqs == list(range(1, count + 1)), f"{room}: {len(seqs)} rows, not 1..{count}"
    assert len(stored) == sum(expected.values())


async def test_messages_through_gateways_become_rows_exactly_once(
    stack: Any, mariadb: MariaDB
) -> None:
    gateways = [stack.gateway(), stack.gateway()]
    stack.persister()
    await asyncio.gather(
        *(
            send_many(gw, f"u{i}-{room}", room, 50)
            for i, gw in enumerate(gateways)
            for room in ["alpha", "beta", "Alpha"]
        )
    )
    wait_rows(mariadb, stack.database, 300)
    assert_exactly_once(mariadb, stack.database, {"alpha": 100, "beta": 100, "Alpha": 100})
    participants = mariadb.query(stack.database, "SELECT COUNT(*) FROM chat_participant")
    assert participants == [(6,)]
    # Stored history is served back, paginated, through the gateway.
    status, body = http_get(gateways[0].url + "/api/rooms/beta/messages?before=11&limit=10")
    page = orjson.loads(body)
    assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(1, 11))


async def test_persister_sigkill_midstream_loses_nothing(stack: Any, mariadb: MariaDB) -> None:
    gateway = stack.gateway()
    # Small, frequent batches so the kill lands between batches and inside them.
    persister = stack.persister(chat_batch_size=20, chat_flush_interval_ms=50)
    traffic = asyncio.create_task(send_many(gateway, "alice", "crash", 200, "a"))
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 40)
    persister.stop(signal.SIGKILL)  # while alice is still sending
    await traffic
    await send_many(gateway, "bob", "crash", 200, "b")  # and more after the kill
    persister = stack.persister(chat_batch_size=20, chat_flush_interval_ms=50)
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 400)
    assert_exactly_once(mariadb, stack.database, {"crash": 400})
    _, metrics = http_get(persister.url + "/metrics")
    assert b"chat_persist_redeliveries_total" in metrics


async def test_two_replicas_share_the_work(stack: Any, mariadb: MariaDB) -> None:
    gateway = stack.gateway()
    replicas = [
        stack.persister(chat_batch_size=10, chat_flush_interval_ms=20, chat_persister_id=f"p{i}")
        for i in range(2)
    ]
    rooms = [f"room{n}" for n in range(8)]  # spread over several shards
    await asyncio.gather(*(send_many(gateway, f"u-{room}", room, 60) for room in rooms))
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 480)
    assert_exactly_once(mariadb, stack.database, {room: 60 for room in rooms})
    written = []
    for replica in replicas:
        _, metrics = http_get(replica.url + "/metrics")
        line = next(
            ln
            for ln in metrics.decode().splitlines()
            if ln.startswith("chat_persist_rows_written_total")
        )
        written.append(float(line.split()[1]))
    assert all(w > 0 for w in written), written


async def test_dead_replicas_entries_are_claimed(stack: Any, mariadb: MariaDB) -> None:
    gateway = stack.gateway()
    # A replica that reads, then dies before writing (its batch waits a long time).
    doomed = stack.persister(
        chat_batch_size=100000, chat_flush_interval_ms=600000, chat_persister_id="doomed"
    )
    await send_many(gateway, "alice", "orphan", 30)
    # Wait until the doomed replica holds everything as pending, then kill it.
    await asyncio.to_thread(
        wait_until,
        lambda: b"chat_persist_lag_seconds 0.0" not in http_get(doomed.url + "/metrics")[1],
        20,
        "the doomed replica to read",
    )
    doomed.stop(signal.SIGKILL)
    survivor = stack.persister(chat_claim_idle_ms=500, chat_persister_id="survivor")
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 30)
    assert_exactly_once(mariadb, stack.database, {"orphan": 30})
    _, metrics = http_get(survivor.url + "/metrics")
    assert b"chat_persist_claimed_total 32.0" in metrics  # 30 messages, a join, a leave


def add_entry(client: Any, room: str, seq: int, ts: int, shards: int) -> None:
    """A message entry in the room's persist stream, as the publish script writes it."""
    event = {"type": "message", "room": room, "seq": seq, "user": "u", "text": "t", "ts": ts}
    client.xadd(keys.room_persist(room, shards), {"e": orjson.dumps(event)})


async def test_a_busy_replica_still_claims_a_dead_replicas_entries(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    """Stale entries are looked for on a timer, not only when nothing is in flight: a replica
    draining a long backlog over many streams takes over a dead one's entries long before the
    backlog is done."""
    shards, backlog, now = 48, 100_000, events.now_ms()
    busy = [f"busy{n}" for n in range(32)]  # many streams: every read returns more than a batch
    client = redis.Redis.from_url(redis_server.url)
    pipe = client.pipeline(transaction=False)
    for n in range(backlog):
        add_entry(pipe, busy[n % len(busy)], n // len(busy) + 1, now, shards)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    # A replica that read the orphan room's entries and died without acknowledging them (its
    # stream holds nothing else).
    used = {keys.room_persist(room, shards) for room in busy}
    orphan = next(
        f"orphan{n}" for n in range(1000) if keys.room_persist(f"orphan{n}", shards) not in used
    )
    orphan_stream = keys.room_persist(orphan, shards)
    for seq in range(1, 31):
        add_entry(client, orphan, seq, now, shards)
    client.xgroup_create(orphan_stream, keys.PERSIST_GROUP, id="0")
    taken = client.xreadgroup(keys.PERSIST_GROUP, "dead", {orphan_stream: ">"}, count=100000)
    assert taken
    # Not claimable at the survivor's first read (idle < 2.5 s); only once it is busy.
    stack.persister(
        chat_shards=shards, chat_batch_size=10, chat_claim_idle_ms=2500,
        chat_persister_id="survivor",
    )  # fmt: skip

    def orphans_stored() -> bool:
        try:
            return len(rows(mariadb, stack.database, orphan)) == 30
        except Exception:  # the table is not there yet
            return False

    await asyncio.to_thread(wait_until, orphans_stored, 60, "the dead replica's entries")
    stored = mariadb.query(stack.database, "SELECT COUNT(*) FROM message")[0][0]
    assert stored - 30 < backlog // 2, f"claimed only after {stored - 30} of {backlog} rows"
    assert [r[1] for r in rows(mariadb, stack.database, orphan)] == list(range(1, 31))
    client.close()


async def test_a_restart_rereads_each_of_its_pending_entries_once(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    """Entries a previous run read and never acknowledged come back once each, even when they
    are many batches' worth over several streams (the re-read goes by id, not from the start)."""
    shards, now = 48, events.now_ms()
    rooms = [f"pending{n}" for n in range(10)]
    client = redis.Redis.from_url(redis_server.url)
    streams = {keys.room_persist(room, shards) for room in rooms}
    for stream in streams:
        client.xgroup_create(stream, keys.PERSIST_GROUP, id="0", mkstream=True)
    for seq in range(1, 51):
        for room in rooms:
            add_entry(client, room, seq, now, shards)
    # What a run of persister "p1" that died after reading everything leaves behind.
    client.xreadgroup(keys.PERSIST_GROUP, "p1", dict.fromkeys(streams, ">"), count=100000)
    persister = stack.persister(chat_shards=shards, chat_batch_size=20, chat_persister_id="p1")
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 500)
    assert_exactly_once(mariadb, stack.database, dict.fromkeys(rooms, 50))
    _, metrics = http_get(persister.url + "/metrics")
    assert b"chat_persist_redeliveries_total 500.0" in metrics
    client.close()


async def test_database_outage_backlog_drains_after(stack: Any, mariadb: MariaDB) -> None:
    gateway = stack.gateway()
    persister = stack.persister(chat_batch_size=50, chat_flush_interval_ms=100)
    await send_many(gateway, "alice", "outage", 50, "a")
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 50)

    await asyncio.to_thread(mariadb.stop)
    try:
        # The chat keeps working while the database is down: no errors, every echo arrives.
        await send_many(gateway, "bob", "outage", 100, "b")
        await asyncio.to_thread(
            wait_until, lambda: http_get(persister.url + "/readyz")[0] == 503, 30, "persister 503"
        )
        assert http_get(gateway.url + "/readyz")[0] == 200
    finally:
        await asyncio.to_thread(mariadb.start)
    await asyncio.to_thread(wait_rows, mariadb, stack.database, 150)
    assert_exactly_once(mariadb, stack.database, {"outage": 150})
    await asyncio.to_thread(
        wait_until, lambda: http_get(persister.url + "/readyz")[0] == 200, 30, "persister ready"
    )


async def test_sync_mode_stores_before_the_echo_and_refuses_without_database(
    stack: Any, mariadb: MariaDB
) -> None:
    from shared.store import Store

    Store(stack.url).migrate()  # a persister would do this; sync mode needs none
    gateway = stack.gateway(chat_persist_mode="sync")
    alice = await join(gateway, "alice", "sync")
    bob = await join(gateway, "bob", "sync")
    for n in range(1, 21):
        await alice.send(type="send", room="sync", text=f"m{n}", cid=f"c{n}")
        echo = await alice.expect("message", room="sync")
        # The row exists by the time its echo arrives.
        assert rows(mariadb, stack.database, "sync")[-1] == ("sync", echo["seq"], "alice", f"m{n}")
    assert [m["seq"] for m in await bob.messages("sync", 20)] == list(range(1, 21))

    await asyncio.to_thread(mariadb.stop)
    try:
        await alice.send(type="send", room="sync", text="nowhere", cid="down")
        error = await alice.expect("error")
        assert (error["code"], error["cid"]) == ("unavailable", "down")
        # Nothing was published: bob's next event is the answer to his ping.
        await bob.send(type="ping")
        assert (await bob.next())["type"] == "pong"
    finally:
        await asyncio.to_thread(mariadb.start)
    await alice.send(type="send", room="sync", text="back", cid="down")
    echo = await alice.expect("message", room="sync")
    assert echo["seq"] == 21 and echo["text"] == "back"
    assert (await bob.expect("message", room="sync"))["seq"] == 21
    assert [r[1] for r in rows(mariadb, stack.database, "sync")] == list(range(1, 22))
