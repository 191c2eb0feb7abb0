"""Acknowledging on one Redis server: every stored entry of every stream acknowledged and
deleted, nothing else touched; malformed entries dropped with the batch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from shared import keys

pytestmark = pytest.mark.anyio


async def test_acknowledging_deletes_exactly_the_stored_entries(persist_source: Any) -> None:
    source, redis = persist_source(4, CollectorRegistry())
    await source.start()
    # 2,500 entries in one stream, 3 in another.
    counts = {source.streams[0]: 2500, source.streams[2]: 3}
    for stream, count in counts.items():
        pipe = redis.pipeline(transaction=False)
        for n in range(count):
            event = {"type": "message", "room": "r", "seq": n + 1, "user": "u", "text": "t"}
            pipe.xadd(stream, {"e": orjson.dumps({**event, "ts": 0})})
        await pipe.execute()
    read = await source.read(10_000, 0)
    assert len(read) == 2503
    kept = read[-1]  # read, not yet stored: stays pending
    await source.ack([entry_id for entry_id, _ in read[:-1]])
    lengths = {s: await redis.xlen(s) for s in source.streams}
    pending = {s: (await redis.xpending(s, keys.PERSIST_GROUP))["pending"] for s in lengths}
    left = dict.fromkeys(source.streams, 0) | {kept[0][0]: 1}
    assert lengths == left and pending == left


async def test_a_malformed_entry_is_dropped_and_acknowledged_with_the_batch(
    persist_source: Any,
) -> None:
    """Read as Redis sends it (no redis-py parsing): a good entry decodes; one that is not
    JSON or lacks the ``e`` field is counted, logged and acknowledged, never stored."""
    registry = CollectorRegistry()
    source, redis = persist_source(1, registry)
    await source.start()
    stream = source.streams[0]
    event = {"type": "message", "room": "r", "seq": 1, "user": "u", "text": "t", "ts": 0}
    await redis.xadd(stream, {"e": orjson.dumps(event)})
    await redis.xadd(stream, {"e": b"{not json"})
    await redis.xadd(stream, {"x": b"1", "y": b"2"})
    read = await source.read(10, 0)
    assert [entry for _, entry in read] == [event]
    await source.ack([entry_id for entry_id, _ in read])
    assert await redis.xlen(stream) == 0
    assert registry.get_sample_value("chat_persist_malformed_total") == 2
