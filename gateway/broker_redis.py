"""The Redis broker: gateways share rooms through one Redis or a Redis Cluster.

Publishing is one script call (``gateway/publisher.py``: seq, log, persist stream, publish,
atomically; every key of a room is in one cluster slot). Every gateway subscribes to the rooms
that have local members (plain pub/sub on one Redis, sharded pub/sub on a cluster:
``gateway/subscriber.py``), read by one owned task. When a subscriber connection is lost, or the
cluster's topology changes, the task reconnects with backoff, re-resolves, resubscribes, and
replays each room's log after the last seq it saw, so local clients miss nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from gateway.broker import Deliver, Published, RoomLog
from gateway.publisher import publisher_for
from gateway.seqs import SeqGuard
from gateway.subscriber import CONFIRM_TIMEOUT_S, Subscriber, subscriber_for
from gateway.supervisor import Supervised
from shared import keys
from shared.config import Settings
from shared.errors import Unavailable
from shared.events import Message
from shared.metrics import GatewayMetrics
from shared.redis_client import REDIS_DOWN, AnyRedis, unavailable
from shared.store import Store

log = logging.getLogger(__name__)


class RedisBroker:
    """Rooms shared by every gateway on one Redis (or cluster)."""

    def __init__(
        self,
        redis: AnyRedis,
        settings: Settings,
        store: Store | None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.shards = settings.shards
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self._heads: dict[str, int] = {}  # room → last seq delivered to the hub
        self.seqs = SeqGuard(
            redis,
            store,
            settings.shards,
            lambda room: self._heads.get(room, 0),
            idle_ttl_ms=settings.room_idle_ttl_ms,
        )
        self.publisher = publisher_for(redis, settings, store, self.seqs)
        self._deliver: Deliver | None = None
        self._subscriber: Subscriber | None = None
        self._channels: dict[str, str] = {}  # channel → room, for subscribed rooms
        self.listener = Supervised("redis-subscriber", self._listen)
        self.connected = asyncio.Event()  # the subscriber is connected and subscribed
        self.reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self.listener.start()

    async def close(self) -> None:
        await self.listener.stop()
        await self._drop_subscriber()
        await self.publisher.close()
        await self.redis.aclose()  # shared with the presence manager, which stops first

    def healthy(self) -> bool:
        return self.connected.is_set()

    def tasks(self) -> list[Supervised]:
        return [self.listener]

    async def ping(self) -> None:
        if not self.connected.is_set():
            raise Unavailable(self.listener.status())
        with unavailable():
            await self.redis.ping()

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        return await self.publisher.publish(room, user, text, cid)

    # -- subscriptions --------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        channel = keys.channel(room, self.shards)
        self._channels[channel] = room
        try:
            with unavailable(f"redis: cannot subscribe to {room}"):
                await asyncio.wait_for(self.connected.wait(), 5)
                assert self._subscriber is not None
                # Bounded as a whole: a connection closed mid-send must not hang the join.
                await asyncio.wait_for(self._subscriber.subscribe(channel), CONFIRM_TIMEOUT_S)
                head = await self.redis.get(keys.seq(room, self.shards))
        except BaseException:
            self._channels.pop(channel, None)
            raise
        self._heads[room] = max(self._heads.get(room, 0), int(head or 0))

    async def unsubscribe(self, room: str) -> None:
        channel = keys.channel(room, self.shards)
        self._channels.pop(channel, None)
        self._heads.pop(room, None)
        if self._subscriber is not None and self.connected.is_set():
            try:
                await self._subscriber.unsubscribe(channel)
            except REDIS_DOWN as exc:
                log.warning("unsubscribe %s failed: %r", room, exc)

    async def _listen(self) -> None:
        """One life of the subscriber: connect, resubscribe, replay, read until it fails."""
        try:
            await self._connect()
            self.listener.up()
            assert self._subscriber is not None
            await self._subscriber.run()
        finally:
            task = asyncio.current_task()
            stopping = task is not None and task.cancelling() > 0  # close(), not a failure
            if self.connected.is_set() and not stopping:
                log.warning("redis subscriber lost; reconnecting")
            self.connected.clear()
            await self._drop_subscriber()

    async def _connect(self) -> None:
        self._subscriber = subscriber_for(self.redis, self._on_message)
        channels = list(self._channels)
        await self._subscriber.open(channels)
        if self.reconnects:
            # Redis may have restarted with older seqs: never let them fall below what we
            # delivered, then replay what we missed.
            await self.seqs.raise_to(dict(self._heads))
            await self._catch_up()
            if self.metrics is not None:
                self.metrics.broker_reconnects.inc()
        self.reconnects += 1
        self.connected.set()
        log.info("redis subscriber connected (%d rooms)", len(channels))

    async def _catch_up(self) -> None:
        """Replay what each subscribed room logged while we were not listening."""
        rooms = [r for r in self._channels.values() if r in self._heads]
        if not rooms:
            return
        pipe = self.redis.pipeline(transaction=False)
        for room in rooms:
            pipe.xrange(keys.log(room, self.shards), min=f"{self._heads[room] + 1}-0")
        for room, entries in zip(rooms, await pipe.execute(), strict=True):
            for data in _payloads(entries):
                self._on_event(room, data)

    async def _on_message(self, channel: str, data: str) -> None:
        room = self._channels.get(channel)
        if room is not None:
            seq = self._on_event(room, data)
            if seq < 0:
                await self._fill_gap(room, -seq, data)

    def _on_event(self, room: str, data: str) -> int:
        """Deliver one room event; returns its seq, or ``-seq`` when seqs before it are missing."""
        event = orjson.loads(data)
        seq = int(event.get("seq", 0))
        if seq:
            # None: not known yet (events racing the subscription's head read); 0 is known.
            head = self._heads.get(room)
            if head is not None:
                if seq <= head:
                    return seq
                if seq > head + 1:
                    return -seq
            self._heads[room] = seq
        if self._deliver is not None:
            self._deliver(room, seq, event.get("ts", 0), data)
        return seq

    async def _fill_gap(self, room: str, seq: int, data: str) -> None:
        head = self._heads.get(room, 0)
        # On a cluster, fan-out follows each publish's replica ack on its own connection, so
        # concurrent publishes of a room may arrive out of order: expected there, odd otherwise.
        level = logging.DEBUG if self.cluster else logging.WARNING
        log.log(level, "gap in %s: %d → %d; replaying from the log", room, head, seq)
        entries = await self.redis.xrange(
            keys.log(room, self.shards), min=f"{head + 1}-0", max=f"{seq - 1}-1"
        )
        for entry in _payloads(entries):
            self._on_event(room, entry)
        # Whatever the log no longer holds is gone for live delivery; clients see the jump in
        # seq and recover from the database with ``join since``. Never backwards: while the log
        # was read, other paths (catch-up, a concurrent fill, live events) may have gone past.
        self._heads[room] = max(self._heads.get(room, 0), seq - 1)
        self._on_event(room, data)

    async def _drop_subscriber(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()

    # -- logs -----------------------------------------------------------------------------

    async def recent(self, room: str, since: int | None, limit: int) -> RoomLog:
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(keys.seq(room, self.shards))
        if since is None:
            pipe.xrevrange(keys.log(room, self.shards), count=limit)
        else:
            pipe.xrange(
                keys.log(room, self.shards),
                min=f"{since + 1}-0",
                count=self.settings.recover_limit,
            )
        with unavailable():
            last, entries = await pipe.execute()
        if last is None:
            # No seq key: a new room, or a Redis that lost its data while the database kept
            # the room's history. Continue from there, as the next publish will.
            last = await self.seqs.verify(room)
        if since is None:
            entries.reverse()
        return RoomLog(int(last or 0), [orjson.loads(d) for d in _payloads(entries)])

    async def older(self, room: str, before: int | None, limit: int) -> list[Message]:
        top = "+" if before is None else f"{before - 1}-1"
        if before is not None and before <= 1:
            return []
        with unavailable():
            entries = await self.redis.xrevrange(
                keys.log(room, self.shards), max=top, min="-", count=limit
            )
        return [orjson.loads(d) for d in reversed(_payloads(entries))]


def _payloads(entries: Any) -> list[str]:
    """The event JSON of each stream entry (field ``e``)."""
    return [str(fields["e"]) for _, fields in entries or ()]
