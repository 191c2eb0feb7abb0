"""A trickle into the persist streams costs about one read per batch, not one per ``gather_s``
(issue 15: the persister's CPU per row at low rates), and still stores every entry once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from persister.worker import Worker
from shared import events, keys
from shared.store import Store

pytestmark = pytest.mark.anyio

SHARDS = 8
RATE = 200  # entries/s
SECONDS = 2.0
FLUSH_S = 0.5


def xreadgroup_calls(info: dict[str, dict[str, float]]) -> int:
    return int(info.get("cmdstat_xreadgroup", {}).get("calls", 0))


async def test_a_trickle_is_read_a_few_times_per_batch_and_stored_once(
    persist_source: Any, tmp_path: Path
) -> None:
    source, redis = persist_source(SHARDS, CollectorRegistry())
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    store.migrate()
    worker = Worker(
        source, store, source.metrics, batch_size=200, flush_interval_s=FLUSH_S, gather_s=0.05
    )
    await worker.start()
    try:
        await redis.config_resetstat()
        total = int(RATE * SECONDS)
        for seq in range(1, total + 1):
            room = f"r{seq % 20}"
            event = {"type": "message", "room": room, "seq": seq, "user": "u", "text": "t"}
            event["ts"] = events.now_ms()  # as the publish script stamps it
            await redis.xadd(keys.room_persist(room, SHARDS), {"e": orjson.dumps(event)})
            await asyncio.sleep(1 / RATE)  # the shape of the load, not a wait for a result
        for _ in range(200):  # every entry stored: at most one more flush interval
            if await source.backlog() == 0:
                break
            await asyncio.sleep(0.05)
        reads = xreadgroup_calls(await redis.info("commandstats"))
        # Acknowledged (nothing pending in the group) and deleted (the backlog above).
        pending = [await redis.xpending(s, keys.PERSIST_GROUP) for s in source.streams]
    finally:
        await worker.stop()

    stored = [m["seq"] for r in range(20) for m in store.after(f"r{r}", 0, 10_000)]
    store.close()
    assert sorted(stored) == list(range(1, total + 1))  # every entry, once
    assert [p["pending"] for p in pending] == [0] * SHARDS
    # One read every gather_s (50 ms) would be 40 over the 2 s, plus the wait: about 45.
    # Reading as often as the batch fills, two per batch (the entries that came during a flush,
    # then the rest): 12. Letting those gather too until the batch is due: one per batch, 7.
    batches = SECONDS / FLUSH_S + 1
    assert reads <= 2 * batches, f"{reads} reads for {batches:.0f} batches"
