"""The persister reads the next batch while one is being written: a slow commit no longer
stalls the reads (issue 15, experiment S: the persister's rows/s at batch 200). Nothing is
acknowledged before its own commit, and every entry is stored once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from persister.worker import Worker
from shared import events, keys
from shared.store import Store
from stack.processes import MariaDB
from tests.conftest import eventually

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

    # The first batch's insert waits for this lock, as for a slow disk.
    lock = mariadb.connect(mysql_url.rsplit("/", 1)[1].split("?")[0])
    with lock.cursor() as cur:
        cur.execute("LOCK TABLES message WRITE")
    worker = Worker(source, store, source.metrics, batch_size=BATCH, flush_interval_s=0.2)
    await worker.start()
    try:
        # Meanwhile the next batch is read (delivered to the worker, so pending), and nothing
        # is acknowledged: the first batch is not committed.
        await eventually(lambda: _at_least(pending, 2 * BATCH), 15, "the next batch read")
        with lock.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM message")
            assert cur.fetchone() == (0,)
    finally:
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        lock.close()
    await eventually(lambda: _drained(source, pending), 30, "every entry stored and acked")
    await worker.stop()

    stored = [m["seq"] for m in store.after("r", 0, 1_000)]
    store.close()
    assert stored == list(range(1, ENTRIES + 1))  # every entry, once, in order


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _drained(source: Any, pending: Any) -> bool:
    return bool(await source.backlog() == 0 and await pending() == 0)
