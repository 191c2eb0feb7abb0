"""The lag gauge (``chat_persist_lag_seconds``, alerted on above 5 s) is the age of the oldest
entry read and not yet stored. A read returns entries stream by stream, so a batch's first
entry can be much newer than its oldest: the gauge took the first one and read near 0 while an
entry a minute old waited."""

from __future__ import annotations

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

SHARDS = 4
FRESH, OLD = "d", "a"  # shards 0 and 3: the fresh entry is read first


async def test_the_lag_is_the_age_of_the_oldest_entry_not_of_the_first_read(
    persist_source: Any, mariadb: MariaDB, mysql_url: str
) -> None:
    assert keys.shard_of(FRESH, SHARDS) < keys.shard_of(OLD, SHARDS)
    registry = CollectorRegistry()
    source, redis = persist_source(SHARDS, registry)
    store = Store(mysql_url)
    store.migrate()
    now = events.now_ms()
    for room, ts in ((FRESH, now), (OLD, now - 60_000)):
        event = {"type": "message", "room": room, "seq": 1, "user": "u", "text": "t", "ts": ts}
        await redis.xadd(keys.room_persist(room, SHARDS), {"e": orjson.dumps(event)})
    worker = Worker(source, store, source.metrics, batch_size=10, flush_interval_s=0.2)

    async def lagging() -> bool:
        return (registry.get_sample_value("chat_persist_lag_seconds") or 0.0) >= 59

    try:
        # The batch's insert waits for the lock: meanwhile the gauge shows the batch's lag.
        with message_table_locked(mariadb, mysql_url):
            await worker.start()
            await eventually(lagging, 15, "the lag of the minute-old entry")
    finally:
        await worker.stop()
    assert [m["seq"] for m in store.after(OLD, 0, 10)] == [1]
    store.close()
