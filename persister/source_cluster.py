"""Reading the persist streams of a Redis Cluster: one owned reader task per stream.

XREADGROUP over several streams must stay in one slot, and every shard's stream is its own slot;
each reader fills a bounded buffer that ``read`` takes from (docs/cluster.md, "Persister").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import Any

from prometheus_client import Counter
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from persister.streams import Entry, EntryId, PersistStreams, RawEntry
from shared import keys
from shared.metrics import PersisterMetrics

log = logging.getLogger(__name__)


class ClusterStreamSource(PersistStreams):
    """A :class:`persister.source.Source` over the persist streams of a Redis Cluster.

    One reader task per stream (each XREADGROUP is routed to the stream's node) appends whole
    replies to a buffer; a reader waits while the buffer holds ``read_ahead`` entries or more,
    so nothing is read far ahead of the batcher (at most one reply per reader past the bound).
    A reader that fails (its node died, the slot moved, the cluster is down during a failover)
    backs off and re-reads its own pending entries before new ones: the consumer group lives
    in the stream and moves with its slot.
    Entries already in flight (buffered, batched, being written) are skipped when a re-read or
    a claim offers them again.
    """

    # Entries per XREADGROUP at least: the cluster client's per-command cost is high (a 30k
    # backlog drained at ~21k rows/s with 16, ~26k with 64; one Redis: ~31k, bound by MariaDB).
    MIN_READ_COUNT = 64
    MAX_BACKOFF_S = 1.0  # a failover takes ~4 s: retry often enough to notice its end

    def __init__(
        self,
        redis: RedisCluster,
        *,
        shards: int,
        consumer: str,
        claim_idle_ms: int,
        metrics: PersisterMetrics,
        read_ahead: int,
        block_ms: int = 500,
    ) -> None:
        super().__init__(
            redis, shards=shards, consumer=consumer, claim_idle_ms=claim_idle_ms, metrics=metrics
        )
        self.read_ahead = read_ahead
        self.block_ms = block_ms
        # Every reader may add one reply past the bound: a share of read_ahead per reply keeps
        # the overshoot near read_ahead.
        self.read_count = max(self.MIN_READ_COUNT, math.ceil(read_ahead / len(self.streams)))
        self._buffer: deque[Entry] = deque()
        self._readable = asyncio.Event()  # the buffer holds entries
        self._room = asyncio.Event()  # the buffer holds fewer than read_ahead entries
        self._room.set()
        self._closing = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._reread: set[str] = set()  # streams whose own pending entries to read again

    async def start(self) -> None:
        """Create the consumer groups, then start one reader task per stream."""
        await self.create_groups()
        self._readers = [
            asyncio.create_task(self._read_stream(stream), name=f"persist-reader {stream}")
            for stream in self.streams
        ]

    async def close(self) -> None:
        """Stop the readers; entries already buffered can still be read and acknowledged.

        A reader inside a command is let finish it (at most ``block_ms``), so what Redis hands
        out reaches the buffer instead of staying pending until a restart or a claim; readers
        stuck longer (a dead node) are cancelled.
        """
        self._closing.set()
        self._room.set()  # wakes readers waiting for room: they see the close
        if self._readers:
            _, stuck = await asyncio.wait(self._readers, timeout=self.block_ms / 1000 + 1)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            self._readers = []

    async def read(self, count: int, timeout: float) -> list[Entry]:
        """Up to ``count`` buffered entries, waiting at most ``timeout`` seconds for the first
        (not at all once closed)."""
        if not self._buffer and timeout > 0 and not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._readable.wait(), timeout)
        batch = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        if not self._buffer:
            self._readable.clear()
        if len(self._buffer) < self.read_ahead:
            self._room.set()
        return batch

    async def ack(self, ids: list[EntryId]) -> None:
        """Acknowledge and delete stored entries; if that fails (e.g. the node died), their
        readers re-read their own pending entries, so these are stored (a no-op) and
        acknowledged again soon rather than claimed back after ``claim_idle_ms``."""
        try:
            await super().ack(ids)
        except Exception:
            self._reread.update(stream for stream, _ in ids)
            raise

    async def _read_stream(self, stream: str) -> None:
        """One stream's reader: own pending entries (after start, after every error, after a
        failed ack), stale entries of dead consumers (every ``_claim_every_s``), else new ones,
        until closed."""
        pending_after: str | None = "0"  # re-reading own pending entries after this id
        next_claim = 0.0
        failures = 0
        group_missing = False
        while True:
            await self._room.wait()
            if self._closing.is_set():
                return
            if stream in self._reread:
                self._reread.discard(stream)
                pending_after = "0"
            try:
                if group_missing:  # e.g. a node came back empty: the group is gone with it
                    await self._create_group(stream)
                    group_missing = False
                if pending_after is not None:
                    entries = await self._xreadgroup(stream, pending_after, block=None)
                    pending_after = entries[-1][1] if entries else None
                    self._append(entries, self.metrics.redeliveries)
                elif time.monotonic() >= next_claim:
                    entries, scanned = await self._claim_stream(stream, self.read_count)
                    if scanned:
                        next_claim = time.monotonic() + self._claim_every_s
                    if self._append(entries, self.metrics.claimed):
                        log.info("claimed stale entries of a dead consumer in %s", stream)
                else:
                    entries = await self._xreadgroup(stream, ">", block=self.block_ms)
                    self._append(entries, None)
            except Exception as exc:
                # The node died, the slot moved, the cluster is failing over...: what this
                # reader was handed stays pending in the stream (which moves with its slot).
                failures += 1
                backoff = min(0.05 * 2 ** min(failures - 1, 5), self.MAX_BACKOFF_S)
                # One warning per outage; the retries (a failover is ~4 s) only at debug level.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "reading %s failed (%r); retrying every <= %.1fs",
                    stream,
                    exc,
                    self.MAX_BACKOFF_S,
                )
                group_missing = isinstance(exc, ResponseError) and "NOGROUP" in str(exc)
                pending_after = "0"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), backoff)
                continue
            if failures:
                log.warning("reading %s again after %d failed attempts", stream, failures)
                failures = 0

    async def _xreadgroup(self, stream: str, after: str, *, block: int | None) -> list[RawEntry]:
        async with self.deadline(block):
            reply: Any = await self.redis.xreadgroup(
                keys.PERSIST_GROUP, self.consumer, {stream: after}, count=self.read_count,
                block=block,
            )  # fmt: skip
        return [
            (stream, str(entry_id), fields)
            for _, entries in reply or ()
            for entry_id, fields in entries
        ]

    def _append(self, entries: list[RawEntry], counter: Counter | None) -> int:
        """Buffer the entries not already in flight (a re-read or a claim of our own entries
        offers them again); returns how many were buffered."""
        fresh: list[Entry] = []
        for stream, entry_id, fields in entries:
            if (stream, entry_id) not in self._in_flight:
                fresh.extend(self._decode(stream, entry_id, fields))
        if fresh:
            self._buffer.extend(fresh)
            self._readable.set()
            if len(self._buffer) >= self.read_ahead:
                self._room.clear()
            if counter is not None:
                counter.inc(len(fresh))
        return len(fresh)
