"""The single-server acknowledgement script: every stored entry of every stream acknowledged
and deleted in one call, whatever the count per stream; nothing else touched."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from shared import keys

pytestmark = pytest.mark.anyio


async def test_one_call_acks_and_deletes_exactly_the_stored_entries(persist_source: Any) -> None:
    source, redis = persist_source(4, CollectorRegistry())
    await source.start()
    # 2,500 entries in one stream (the script goes 1,000 ids at a time), 3 in another.
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
    await redis.config_resetstat()
    await source.ack([entry_id for entry_id, _ in read[:-1]])
    stats = await redis.info("commandstats")
    # One script call that ran (the first meets NOSCRIPT: redis-py loads it and retries);
    # inside it, 1,000 ids per XACK: 3 for the first stream, 1 for the other.
    evalsha = stats["cmdstat_evalsha"]
    assert evalsha["calls"] - evalsha["failed_calls"] == 1, evalsha
    assert stats["cmdstat_xack"]["calls"] == 4, stats["cmdstat_xack"]
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
