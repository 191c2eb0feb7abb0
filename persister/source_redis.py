"""Reading the persist streams of every shard as the consumer group ``persister``.

Entries stay pending in Redis until acknowledged (after the database commit), then are deleted.
A restarted persister first re-reads its own pending entries; entries left pending by a dead
replica are claimed after ``claim_idle_ms`` (XAUTOCLAIM).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import keys
from shared.metrics import PersisterMetrics

log = logging.getLogger(__name__)

EntryId = tuple[str, str]  # (stream key, entry id)


class RedisStreamSource:
    """A :class:`persister.source.Source` over Redis persist streams."""

    def __init__(
        self,
        redis: Redis,
        *,
        shards: int,
        consumer: str,
        claim_idle_ms: int,
        metrics: PersisterMetrics,
    ) -> None:
        self.redis = redis
        self.streams = [keys.persist(shard) for shard in range(shards)]
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.metrics = metrics
        self._own_pending_done = False
        self._claim_cursor: dict[str, str] = {}
        self._malformed: list[EntryId] = []
        self._in_flight: set[EntryId] = set()  # read, not yet acknowledged

    async def create_groups(self) -> None:
        """Create the consumer group on every stream (idempotent)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, keys.PERSIST_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, count: int, timeout: float) -> list[tuple[EntryId, dict[str, Any]]]:
        """Own pending entries first (after a restart), then stale ones of others, then new."""
        if not self._own_pending_done:
            batch = await self._read_group({s: "0" for s in self.streams}, count, None)
            if batch:
                self.metrics.redeliveries.inc(len(batch))
                return batch
            self._own_pending_done = True
        if not self._in_flight:
            # Claim only with nothing in flight: our own entries go idle while a batch waits,
            # and must not be claimed back into the same batch.
            claimed = await self._claim(count)
            if claimed:
                return claimed
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        return await self._read_group({s: ">" for s in self.streams}, count, block)

    async def _read_group(
        self, streams: dict[Any, Any], count: int, block: int | None
    ) -> list[tuple[EntryId, dict[str, Any]]]:
        reply: Any = await self.redis.xreadgroup(
            keys.PERSIST_GROUP, self.consumer, streams, count=count, block=block
        )
        batch: list[tuple[EntryId, dict[str, Any]]] = []
        for stream, entries in reply or ():
            for entry_id, fields in entries:
                batch.extend(self._decode(str(stream), str(entry_id), fields))
        return batch

    async def _claim(self, count: int) -> list[tuple[EntryId, dict[str, Any]]]:
        batch: list[tuple[EntryId, dict[str, Any]]] = []
        for stream in self.streams:
            if len(batch) >= count:
                break
            reply = await self.redis.xautoclaim(
                stream,
                keys.PERSIST_GROUP,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_cursor.get(stream, "0-0"),
                count=count - len(batch),
            )
            self._claim_cursor[stream] = str(reply[0])
            for entry_id, fields in reply[1]:
                batch.extend(self._decode(stream, str(entry_id), fields))
        if batch:
            self.metrics.claimed.inc(len(batch))
            log.info("claimed %d stale entries of a dead consumer", len(batch))
        return batch

    def _decode(
        self, stream: str, entry_id: str, fields: Any
    ) -> list[tuple[EntryId, dict[str, Any]]]:
        try:
            entry = orjson.loads(fields["e"])
            self._in_flight.add((stream, entry_id))
            return [((stream, entry_id), entry)]
        except (KeyError, TypeError, orjson.JSONDecodeError):
            # Not ours to store; acknowledge it so it never blocks the stream.
            log.error("dropping malformed persist entry %s %s: %r", stream, entry_id, fields)
            self.metrics.malformed.inc()
            self._malformed.append((stream, entry_id))
            return []

    async def ack(self, ids: list[EntryId]) -> None:
        """Acknowledge and delete stored entries (and any malformed ones seen)."""
        ids = ids + self._malformed
        self._malformed = []
        self._in_flight.difference_update(ids)
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in ids:
            by_stream.setdefault(stream, []).append(entry_id)
        pipe = self.redis.pipeline(transaction=False)
        for stream, entry_ids in by_stream.items():
            pipe.xack(stream, keys.PERSIST_GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
        if by_stream:
            await pipe.execute()

    async def backlog(self) -> int:
        """Entries in the persist streams (new and pending)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xlen(stream)
        return sum(int(n) for n in await pipe.execute())
