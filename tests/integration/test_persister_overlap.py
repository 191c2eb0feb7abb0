"""The persister reads the next batch while one is being written: a slow commit no longer
stalls the reads (issue 15, experiment S: the persister's rows/s at batch 200). Nothing is
acknowledged before its own commit, and every entry is stored once."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from persister.worker import Worker
from shared import events, keys
from shared.store import Store
from stack.processes import MariaDB
from tests.conftest import eventually, message_table_locked

pytestmark = pytest.mark.anyio

BATCH = 50
ENTRIES = 130


async def test_the_next_batch_is_read_while_one_waits_for_the_database(
    persist_source: Any, mariadb: MariaDB, mysql_url: str
) -> None:
    source, redis = persist_source(4, CollectorRegistry())
    store = Store(mysql_url)
    store.migrate()
    now = events.now_ms()
    for seq in range(1, ENTRIES + 1):
        event = {"type": "message", "room": "r", "seq": seq, "user": "u", "text": "t", "ts": now}
        await redis.xadd(keys.room_persist("r", 4), {"e": orjson.dumps(event)})
    stream = keys.room_persist("r", 4)

    async def pending() -> int:
        return int((await redis.xpending(stream, keys.PERSIST_GROUP))["pending"])

    worker = Worker(source, store, source.metrics, batch_size=BATCH, flush_interval_s=0.2)
    # The first batch's insert waits for the lock, as for a slow disk.
    with message_table_locked(mariadb, mysql_url) as lock:
        await worker.start()
        # Meanwhile the next batch is read (delivered to the worker, so pending), and nothing
        # is acknowledged: the first batch is not committed.
        await eventually(lambda: _at_least(pending, 2 * BATCH), 15, "the next batch read")
        with lock.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM message")
            assert cur.fetchone() == (0,)
    await eventually(lambda: _drained(source, pending), 30, "every entry stored and acked")
    await worker.stop()

    stored = [m["seq"] for m in store.after("r", 0, 1_000)]
    store.close()
    assert stored == list(range(1, ENTRIES + 1))  # every entry, once, in order


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _drained(source: Any, pending: Any) -> bool:
    return bool(await source.backlog() == 0 and await pending() == 0)


async def test_a_full_batch_left_from_a_big_read_is_written_before_reading_again(
    persist_source: Any, mysql_url: str
) -> None:
    """A read returns up to ``count`` entries *per stream*, so it can leave more than a batch in
    the batcher. That batch is due: it must be written before the next read, which, with every
    stream drained, blocks for ``poll_s`` (at the end of a backlog that stalled the persister
    for a second: half the time of `make bench-persister`'s 50,000-row drain)."""
    source, redis = persist_source(4, CollectorRegistry())
    store = Store(mysql_url)
    store.migrate()
    now = events.now_ms()
    rooms = [f"r{n}" for n in range(40)]
    streams = {keys.room_persist(room, 4) for room in rooms}
    assert len(streams) == 4  # so that one read returns more than one batch
    for seq in range(1, 6):
        for room in rooms:
            event = {"type": "message", "room": room, "seq": seq, "user": "u", "text": "t"}
            await redis.xadd(keys.room_persist(room, 4), {"e": orjson.dumps({**event, "ts": now})})
    # 200 entries, four full batches: only size makes a batch due (not the timer).
    worker = Worker(source, store, source.metrics, batch_size=BATCH, flush_interval_s=600)
    due_at_read: list[bool] = []
    read = source.read

    async def recording_read(count: int, timeout: float) -> list[Any]:
        due_at_read.append(worker.batcher.due())
        return await read(count, timeout)

    source.read = recording_read
    await worker.start()
    try:
        await eventually(lambda: _drained(source, lambda: _pending(redis, streams)), 30, "drain")
    finally:
        await worker.stop()
    stored = sorted((m["room"], m["seq"]) for r in rooms for m in store.after(r, 0, 100))
    store.close()
    assert stored == sorted((room, seq) for room in rooms for seq in range(1, 6))
    assert len(due_at_read) >= 2 and not any(due_at_read), due_at_read


async def _pending(redis: Any, streams: set[str]) -> int:
    replies = [await redis.xpending(s, keys.PERSIST_GROUP) for s in streams]
    return sum(int(r["pending"]) for r in replies)


async def test_entries_that_waited_long_are_written_without_the_trickle_pause(
    persist_source: Any, mysql_url: str
) -> None:
    """After a batch due by time the loop pauses (up to the interval) so that a trickle gathers
    in Redis. Entries that waited far longer (claimed from a dead replica, a backlog's tail)
    make a batch due at once: the loop writes them and reads on, without that pause."""
    source, redis = persist_source(4, CollectorRegistry())
    store = Store(mysql_url)
    store.migrate()
    stream = keys.room_persist("r", 4)
    old = events.now_ms() - 120_000

    async def put(seqs: range) -> None:
        for seq in seqs:
            event = {"type": "message", "room": "r", "seq": seq, "user": "u", "text": "t"}
            await redis.xadd(stream, {"e": orjson.dumps({**event, "ts": old})})

    async def pending() -> int:
        return int((await redis.xpending(stream, keys.PERSIST_GROUP))["pending"])

    # The pause would be 30 s (the interval, capped by poll_s): far past the waits below.
    worker = Worker(source, store, source.metrics, batch_size=BATCH, flush_interval_s=30, poll_s=30)
    await put(range(1, 11))
    await worker.start()
    try:
        await eventually(lambda: _drained(source, pending), 10, "the first old entries stored")
        await put(range(11, 21))
        await eventually(lambda: _drained(source, pending), 10, "the next ones, at once")
    finally:
        stopping = asyncio.create_task(worker.stop())
        await put(range(21, 22))  # ends the read that blocks for poll_s
        await stopping

    stored = [m["seq"] for m in store.after("r", 0, 100)]
    store.close()
    assert stored == list(range(1, 22))
