"""Reading the persist streams from one Redis server, and choosing the source for a client.

Two ways of reading new entries, chosen by the client (:func:`stream_source`):

- one Redis server: one XREADGROUP over every stream per :meth:`RedisStreamSource.read`;
- a Redis Cluster: XREADGROUP over several streams must stay in one slot, and every shard's
  stream is its own slot, so :class:`persister.source_cluster.ClusterStreamSource` runs one
  reader task per stream (docs/cluster.md, "Persister").
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from persister.source_cluster import ClusterStreamSource
from persister.streams import Entry, PersistStreams
from shared import keys
from shared.metrics import PersisterMetrics
from shared.redis_client import AnyRedis

log = logging.getLogger(__name__)


class RedisStreamSource(PersistStreams):
    """A :class:`persister.source.Source` over the persist streams of one Redis server."""

    CLAIM_COUNT = 100  # stale entries taken per stream per look

    def __init__(
        self,
        redis: Redis,
        *,
        shards: int,
        consumer: str,
        claim_idle_ms: int,
        metrics: PersisterMetrics,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            redis,
            shards=shards,
            consumer=consumer,
            claim_idle_ms=claim_idle_ms,
            metrics=metrics,
            timeout_s=timeout_s,
        )
        # Own pending entries (left by a previous run) are read first, by id from this cursor
        # per stream: ids after the last one returned, so entries read but not acknowledged yet
        # (a read can return more than one batch) are not returned twice. None once done.
        self._pending_after: dict[str, str] | None = dict.fromkeys(self.streams, "0")
        self._next_claim = 0.0
        self._closed = False
        # XREADGROUP replies stay as Redis sends them ({stream: [[id, [name, value]], ...]}):
        # redis-py would build a dict per entry through several layers, about a tenth of the
        # persister's CPU when it drains a backlog. ``_decode`` takes either shape.
        redis.set_response_callback("XREADGROUP", _as_sent)

    async def start(self) -> None:
        """Create the consumer groups; reading happens in :meth:`read`."""
        await self.create_groups()

    async def close(self) -> None:
        """Take no new entries: what is not read yet stays in Redis for the next reader."""
        self._closed = True

    async def read(self, count: int, timeout: float) -> list[Entry]:
        """Own pending entries first (after a restart), then stale ones of dead consumers (at
        most every ``_claim_every_s``), then new ones."""
        if self._closed:
            return []
        if self._pending_after is not None:
            batch = await self._read_group(self._pending_after, count, None)
            if batch:
                self.metrics.redeliveries.inc(len(batch))
                return batch
            self._pending_after = None
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_every_s
            # Not just what fits the current batch: a busy reader asks for one entry at a time.
            claimed = await self._claim(max(count, self.CLAIM_COUNT))
            if claimed:
                return claimed
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        return await self._read_group({s: ">" for s in self.streams}, count, block)

    async def _read_group(
        self, streams: dict[Any, Any], count: int, block: int | None
    ) -> list[Entry]:
        async with self.deadline(block):
            reply: Any = await self.redis.xreadgroup(
                keys.PERSIST_GROUP, self.consumer, streams, count=count, block=block
            )
        batch: list[Entry] = []
        # As sent: a map of stream → entries (RESP3, redis-py's default), pairs in RESP2.
        for stream, entries in reply.items() if isinstance(reply, dict) else reply or ():
            for entry_id, fields in entries:
                batch.extend(self._decode(str(stream), str(entry_id), fields))
            if entries and self._pending_after is not None:
                self._pending_after[str(stream)] = str(entries[-1][0])
        return batch

    async def _claim(self, count: int) -> list[Entry]:
        """Entries idle for ``claim_idle_ms`` in any stream (one pipelined XAUTOCLAIM per
        stream); our own entries still being written are skipped, not taken twice."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            self._xautoclaim(pipe, stream, count)
        async with self.deadline():
            replies = await pipe.execute()
        batch: list[Entry] = []
        for stream, reply in zip(self.streams, replies, strict=True):
            claimed, _ = self._claimed(stream, reply)
            for _, entry_id, fields in claimed:
                if (stream, entry_id) not in self._in_flight:
                    batch.extend(self._decode(stream, entry_id, fields))
        if batch:
            self.metrics.claimed.inc(len(batch))
            log.info("claimed %d stale entries of a dead consumer", len(batch))
        return batch


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def stream_source(
    redis: AnyRedis,
    *,
    shards: int,
    consumer: str,
    claim_idle_ms: int,
    metrics: PersisterMetrics,
    read_ahead: int,
) -> RedisStreamSource | ClusterStreamSource:
    """The source for the client's mode: per-stream readers on a cluster, else one reader."""
    if isinstance(redis, RedisCluster):
        return ClusterStreamSource(
            redis,
            shards=shards,
            consumer=consumer,
            claim_idle_ms=claim_idle_ms,
            metrics=metrics,
            read_ahead=read_ahead,
        )
    return RedisStreamSource(
        redis, shards=shards, consumer=consumer, claim_idle_ms=claim_idle_ms, metrics=metrics
    )
