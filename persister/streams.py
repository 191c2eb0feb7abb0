"""The persist streams of every shard, read as the consumer group ``persister``: what the
single-Redis and the cluster sources share (the group, decoding, acknowledging, the backlog).

Entries stay pending in Redis until acknowledged (after the database commit), then are deleted.
A restarted persister first re-reads its own pending entries; entries left pending by a dead
replica are claimed after ``claim_idle_ms`` (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.exceptions import ResponseError

from shared import keys
from shared.metrics import PersisterMetrics
from shared.redis_client import AnyRedis

log = logging.getLogger(__name__)

EntryId = tuple[str, str]  # (stream key, entry id)
Entry = tuple[EntryId, dict[str, Any]]  # decoded
RawEntry = tuple[str, str, Any]  # (stream key, entry id, fields) as Redis returns it


class PersistStreams:
    """What both modes share: the group, decoding, acknowledging, the backlog."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        shards: int,
        consumer: str,
        claim_idle_ms: int,
        metrics: PersisterMetrics,
        timeout_s: float = 10.0,
    ) -> None:
        self.redis = redis
        # Every Redis operation (a read, a pipeline) has one deadline, armed here, not one per
        # reply: the persister's client has no socket timeout (persister/__main__.py), as an
        # asyncio timeout per reply was a third of a pipelined command's CPU.
        self.timeout_s = timeout_s
        self.streams = [keys.persist(shard, shards) for shard in range(shards)]
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.metrics = metrics
        self._claim_cursor: dict[str, str] = {}
        # Stale entries of a dead consumer are looked for this often: they are taken at most
        # 10 % after they became claimable (a look names every stream, so not every second).
        self._claim_every_s = min(5.0, claim_idle_ms / 10_000)
        self._malformed: list[EntryId] = []
        self._in_flight: set[EntryId] = set()  # read, not yet acknowledged

    async def create_groups(self) -> None:
        """Create the consumer group on every stream (idempotent; routed by key in a cluster)."""
        for stream in self.streams:
            await self._create_group(stream)

    def deadline(self, block_ms: int | None = None) -> asyncio.Timeout:
        """The deadline of one Redis operation (``timeout_s``, plus the time it may block)."""
        return asyncio.timeout(self.timeout_s + (block_ms or 0) / 1000)

    async def _create_group(self, stream: str) -> None:
        try:
            async with self.deadline():
                await self.redis.xgroup_create(stream, keys.PERSIST_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_stream(self, stream: str, count: int) -> tuple[list[RawEntry], bool]:
        """Stale entries of ``stream`` idle for ``claim_idle_ms``, and whether the scan of its
        pending entries is complete (XAUTOCLAIM's cursor is back at the start)."""
        async with self.deadline():
            reply = await self._xautoclaim(self.redis, stream, count)
        return self._claimed(stream, reply)

    def _xautoclaim(self, client: Any, stream: str, count: int) -> Any:
        """XAUTOCLAIM on ``client`` (the client, or a pipeline it is queued on), from the
        stream's cursor."""
        return client.xautoclaim(
            stream,
            keys.PERSIST_GROUP,
            self.consumer,
            self.claim_idle_ms,
            start_id=self._claim_cursor.get(stream, "0-0"),
            count=count,
        )

    def _claimed(self, stream: str, reply: Any) -> tuple[list[RawEntry], bool]:
        cursor = str(reply[0])
        self._claim_cursor[stream] = cursor
        return [(stream, str(entry_id), fields) for entry_id, fields in reply[1]], cursor == "0-0"

    def _decode(self, stream: str, entry_id: str, fields: Any) -> list[Entry]:
        try:
            entry = orjson.loads(_body(fields))
            self._in_flight.add((stream, entry_id))
            return [((stream, entry_id), entry)]
        except (KeyError, TypeError, orjson.JSONDecodeError):
            # Not ours to store; acknowledge it so it never blocks the stream.
            log.error("dropping malformed persist entry %s %s: %r", stream, entry_id, fields)
            self.metrics.malformed.inc()
            self._malformed.append((stream, entry_id))
            return []

    async def ack(self, ids: list[EntryId]) -> None:
        """Acknowledge and delete stored entries (and any malformed ones seen).

        XACK and XDEL are idempotent: an acknowledgement that fails leaves the entries pending,
        and they are read (and stored, a no-op) again.
        """
        ids = ids + self._malformed
        self._malformed = []
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in ids:
            by_stream.setdefault(stream, []).append(entry_id)
        # Non-transactional: in a cluster the client splits it per node, whatever the slots.
        pipe = self.redis.pipeline(transaction=False)
        for stream, entry_ids in by_stream.items():
            pipe.xack(stream, keys.PERSIST_GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
        try:
            if by_stream:
                async with self.deadline():
                    await pipe.execute()
        finally:
            # Only now: a cluster reader re-reading its pending entries meanwhile skips these.
            self._in_flight.difference_update(ids)

    async def backlog(self) -> int:
        """Entries in the persist streams (new and pending)."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xlen(stream)
        async with self.deadline():
            lengths = await pipe.execute()
        return sum(int(n) for n in lengths)


def _body(fields: Any) -> Any:
    """An entry's ``e`` field: from redis-py's dict, or from a raw reply's list (``[name,
    value, ...]``; see :class:`persister.source_redis.RedisStreamSource`). KeyError if absent,
    TypeError if the entry has no fields (deleted while pending)."""
    if isinstance(fields, list):
        if len(fields) == 2 and fields[0] == "e":  # what the publish scripts write
            return fields[1]
        fields = dict(zip(fields[::2], fields[1::2], strict=False))
    return fields["e"]
