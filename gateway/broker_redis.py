"""The Redis broker: gateways share rooms through Redis.

Publishing is one script call (seq, log, persist stream, publish: atomic). Every gateway keeps one
pub/sub connection, read by one owned task, subscribed to the rooms that have local members.
When that connection is lost the task reconnects with backoff, resubscribes, and replays each
room's log after the last seq it saw, so local clients miss nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.broker import Deliver, Published, RoomLog
from shared import events, keys, scripts
from shared.config import Settings
from shared.errors import Unavailable
from shared.metrics import GatewayMetrics
from shared.store import Store

log = logging.getLogger(__name__)

# Errors that mean "Redis is not reachable right now".
REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


class RedisBroker:
    """Rooms shared by every gateway on one Redis."""

    def __init__(
        self, settings: Settings, store: Store | None, metrics: GatewayMetrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.shards = settings.shards
        self.gateway = settings.gateway_id
        # A bounded pool that makes callers wait for a free connection (a burst of joins must
        # queue, not fail), and no automatic retries: a publish retried after a lost reply
        # could publish twice.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_pool_size,
            timeout=10,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        self.redis = Redis(connection_pool=pool)
        self._publish = self.redis.register_script(scripts.PUBLISH)
        self._presence = self.redis.register_script(scripts.PRESENCE)
        self._sweep = self.redis.register_script(scripts.SWEEP)
        self._reserve = self.redis.register_script(scripts.RESERVE)
        self._commit = self.redis.register_script(scripts.COMMIT)
        self.sync = settings.persist_mode == "sync"
        self._sync_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._deliver: Deliver | None = None
        self._pubsub: PubSub | None = None
        self._channels: dict[str, str] = {}  # channel → room, for subscribed rooms
        self._heads: dict[str, int] = {}  # room → last seq delivered to the hub
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._local: Counter[tuple[str, str]] = Counter()  # (room, user) → local connections
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()  # the subscriber is connected and subscribed
        self.reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._tasks = [
            asyncio.create_task(self._listen(), name="redis-subscriber"),
            asyncio.create_task(self._keep_presence(), name="redis-presence"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._drop_pubsub()
        await self.redis.aclose()

    def healthy(self) -> bool:
        return self.connected.is_set()

    async def ping(self) -> None:
        if not self.connected.is_set():
            raise Unavailable("redis subscriber is not connected")
        try:
            await self.redis.ping()
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        if self.sync:
            return await self._publish_sync(room, user, text, cid)
        body: dict[str, Any] = {"type": "message", "room": room, "user": user, "text": text}
        if cid is not None:
            body["cid"] = cid
        script_keys = [
            keys.seq(room, self.shards),
            keys.log(room, self.shards),
            keys.persist(keys.shard_of(room, self.shards)),
            keys.cid(room, user, cid or "", self.shards),
        ]
        args: list[str | int] = [
            orjson.dumps(body)[:-1].decode(),
            keys.channel(room, self.shards),
            self.settings.recent_log_size,
            int(self.settings.cid_window_s) if cid is not None else "",
            "0",
        ]
        try:
            result = await self._publish(keys=script_keys, args=args)
            if result[0] == 2:
                await self._seed(room)
                result = await self._publish(keys=script_keys, args=args)
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        return Published(orjson.loads(result[1]), duplicate=result[0] == 1)

    async def _publish_sync(self, room: str, user: str, text: str, cid: str | None) -> Published:
        """Synchronous persist mode: insert into the database, then publish (the comparison
        branch of the original project). A per-room lock keeps seqs gapless and in order."""
        # This process's senders to one room queue on a local lock, so only one of them at a
        # time contends (with the other gateways) for the room's Redis lock.
        lock, users = self._sync_locks.get(room, (asyncio.Lock(), 0))
        self._sync_locks[room] = (lock, users + 1)
        try:
            async with lock:
                return await self._publish_locked(room, user, text, cid)
        finally:
            lock, users = self._sync_locks[room]
            if users == 1:
                del self._sync_locks[room]
            else:
                self._sync_locks[room] = (lock, users - 1)

    async def _publish_locked(self, room: str, user: str, text: str, cid: str | None) -> Published:
        token = uuid.uuid4().hex
        lock = keys.lock(room, self.shards)
        script_keys = [keys.seq(room, self.shards), keys.cid(room, user, cid or "", self.shards)]
        reserve_args: list[str | int] = [cid or "", token, 10_000]
        try:
            for attempt in range(2000):
                result = await self._reserve(keys=[*script_keys, lock], args=reserve_args)
                if result[0] == 2:
                    await self._seed(room)
                elif result[0] != 3:
                    break
                await asyncio.sleep(0.0005 * min(attempt + 1, 20))  # the room is busy
            else:
                raise Unavailable(f"room {room} stayed locked")
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        if result[0] == 1:
            return Published(orjson.loads(result[1]), duplicate=True)
        event = events.message(room, int(result[1]), user, text, int(result[2]), cid)
        commit_keys = [
            keys.seq(room, self.shards),
            keys.log(room, self.shards),
            keys.cid(room, user, cid or "", self.shards),
            lock,
        ]
        commit_args: list[str | int] = [
            events.encode(event),
            event["seq"],
            keys.channel(room, self.shards),
            self.settings.recent_log_size,
            int(self.settings.cid_window_s) if cid is not None else "",
            token,
            "0",
        ]
        try:
            assert self.store is not None
            await asyncio.to_thread(self.store.write, [event])
        except Exception as exc:
            with contextlib.suppress(*REDIS_DOWN):
                await self._commit(keys=commit_keys, args=[*commit_args, "abort"])
            raise Unavailable(f"store: {exc}") from exc
        try:
            await self._commit(keys=commit_keys, args=[*commit_args, "publish"])
        except REDIS_DOWN as exc:
            # Stored, not published: the message is in the database and comes back by history.
            raise Unavailable(f"redis: {exc}") from exc
        return Published(event, duplicate=False)

    async def _seed(self, room: str) -> None:
        # A room's first message (or its seq key was lost): continue from the database.
        last = 0
        if self.store is not None:
            try:
                last = await asyncio.to_thread(self.store.last_seq, room)
            except Exception as exc:
                raise Unavailable(f"store: {exc}") from exc
        await self.redis.set(keys.seq(room, self.shards), last, nx=True)

    # -- subscriptions --------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        channel = keys.channel(room, self.shards)
        self._channels[channel] = room
        try:
            await asyncio.wait_for(self.connected.wait(), 5)
            confirmed = asyncio.get_running_loop().create_future()
            self._confirm[channel] = confirmed
            assert self._pubsub is not None
            await self._pubsub.subscribe(channel)
            await asyncio.wait_for(confirmed, 5)
            head = await self.redis.get(keys.seq(room, self.shards))
        except REDIS_DOWN as exc:
            self._channels.pop(channel, None)
            raise Unavailable(f"redis: cannot subscribe to {room}: {exc!r}") from exc
        finally:
            self._confirm.pop(channel, None)
        self._heads[room] = max(self._heads.get(room, 0), int(head or 0))

    async def unsubscribe(self, room: str) -> None:
        channel = keys.channel(room, self.shards)
        self._channels.pop(channel, None)
        self._heads.pop(room, None)
        if self._pubsub is not None and self.connected.is_set():
            try:
                await self._pubsub.unsubscribe(channel)
            except REDIS_DOWN as exc:
                log.warning("unsubscribe %s failed: %r", room, exc)

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._connect()
                backoff = 0.05
                await self._read()
            except REDIS_DOWN as exc:
                if self.connected.is_set():
                    log.warning("redis subscriber lost: %r; reconnecting", exc)
                self.connected.clear()
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _connect(self) -> None:
        pubsub = self.redis.pubsub()
        self._pubsub = pubsub
        await pubsub.ping()  # connects
        channels = list(self._channels)
        if channels:
            await pubsub.subscribe(*channels)
            pending = set(channels)
            while pending:
                message = await pubsub.get_message(timeout=5)
                if message is None:
                    raise TimeoutError("no subscribe confirmation from redis")
                if message["type"] == "subscribe":
                    pending.discard(message["channel"])
        if self.reconnects:
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

    async def _read(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        quiet_since = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is None:
                # A silent connection may be a dead one: ping it, and give up if nothing comes.
                if now - quiet_since > 15:
                    raise TimeoutError("redis subscriber connection is silent")
                if now - quiet_since > 5:
                    await pubsub.ping()
                continue
            quiet_since = now
            kind = message["type"]
            if kind == "message":
                room = self._channels.get(message["channel"])
                if room is not None:
                    data = message["data"]
                    seq = self._on_event(room, data)
                    if seq < 0:
                        await self._fill_gap(room, -seq, data)
            elif kind == "subscribe":
                confirmed = self._confirm.get(message["channel"])
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)

    def _on_event(self, room: str, data: str) -> int:
        """Deliver one room event; returns its seq, or ``-seq`` when seqs before it are missing."""
        event = orjson.loads(data)
        seq = int(event.get("seq", 0))
        if seq:
            head = self._heads.get(room, 0)
            if seq <= head:
                return seq
            if head and seq > head + 1:
                return -seq
            self._heads[room] = seq
        if self._deliver is not None:
            self._deliver(room, seq, event.get("ts", 0), data)
        return seq

    async def _fill_gap(self, room: str, seq: int, data: str) -> None:
        head = self._heads.get(room, 0)
        log.warning("gap in %s: %d → %d; replaying from the log", room, head, seq)
        entries = await self.redis.xrange(
            keys.log(room, self.shards), min=f"{head + 1}-0", max=f"{seq - 1}-1"
        )
        for entry in _payloads(entries):
            self._on_event(room, entry)
        # Whatever the log no longer holds is gone for live delivery; clients see the jump in
        # seq and recover from the database with ``join since``.
        self._heads[room] = seq - 1
        self._on_event(room, data)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

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
        try:
            last, entries = await pipe.execute()
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        if since is None:
            entries.reverse()
        return RoomLog(int(last or 0), [orjson.loads(d) for d in _payloads(entries)])

    async def older(self, room: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        top = "+" if before is None else f"{before - 1}-1"
        if before is not None and before <= 1:
            return []
        try:
            entries = await self.redis.xrevrange(
                keys.log(room, self.shards), max=top, min="-", count=limit
            )
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        return [orjson.loads(d) for d in reversed(_payloads(entries))]

    # -- presence -------------------------------------------------------------------------

    def _presence_args(self, room: str, user: str, change: str) -> dict[str, Any]:
        expiry = int(time.time() * 1000) + int(self.settings.presence_ttl_s * 1000)
        return {
            "keys": [
                keys.presence(room, self.shards),
                keys.presence_user(room, user, self.shards),
                keys.persist(keys.shard_of(room, self.shards)),
            ],
            "args": [
                user,
                self.gateway,
                expiry,
                keys.channel(room, self.shards),
                change,
                "0",
                room,
            ],
        }

    async def presence_join(self, room: str, user: str) -> None:
        self._local[(room, user)] += 1
        if self._local[(room, user)] > 1:
            return
        try:
            await self._presence(**self._presence_args(room, user, "join"))
        except REDIS_DOWN as exc:
            self._local[(room, user)] -= 1
            if not self._local[(room, user)]:
                del self._local[(room, user)]
            raise Unavailable(f"redis: {exc}") from exc

    async def presence_leave(self, room: str, user: str) -> None:
        if self._local[(room, user)] <= 0:
            return
        self._local[(room, user)] -= 1
        if self._local[(room, user)]:
            return
        del self._local[(room, user)]
        try:
            await self._presence(**self._presence_args(room, user, "leave"))
        except REDIS_DOWN as exc:
            # The entry expires on its own within the presence TTL.
            raise Unavailable(f"redis: {exc}") from exc

    async def members(self, room: str) -> list[str]:
        try:
            fields = await self.redis.hgetall(keys.presence(room, self.shards))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        now = time.time() * 1000
        return sorted(str(user) for user, expiry in fields.items() if float(expiry) > now)

    async def _keep_presence(self) -> None:
        """Refresh our users' presence; expire users of gateways that stopped refreshing."""
        interval = self.settings.presence_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._refresh_presence()
            except REDIS_DOWN as exc:
                log.warning("presence refresh failed: %r", exc)

    async def _refresh_presence(self) -> None:
        expiry = int(time.time() * 1000) + int(self.settings.presence_ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        rooms = set()
        for room, user in list(self._local):
            rooms.add(room)
            zset = keys.presence_user(room, user, self.shards)
            pipe.zadd(zset, {self.gateway: expiry})
            pipe.pexpireat(zset, expiry)
            pipe.hset(keys.presence(room, self.shards), user, expiry)
        if rooms:
            await pipe.execute()
        for room in rooms:
            await self._sweep(
                keys=[
                    keys.presence(room, self.shards),
                    keys.persist(keys.shard_of(room, self.shards)),
                ],
                args=[
                    keys.channel(room, self.shards),
                    "0",
                    room,
                    keys.presence(room, self.shards) + "#",
                ],
            )

    async def rooms(self) -> list[dict[str, Any]]:
        try:
            found = set()
            for pattern in keys.ROOM_PATTERNS:
                async for key in self.redis.scan_iter(pattern, count=1000):
                    found.add(keys.room_in(str(key)))
            found.discard(None)
            names = sorted(r for r in found if r is not None)
            pipe = self.redis.pipeline(transaction=False)
            for room in names:
                pipe.get(keys.seq(room, self.shards))
                pipe.hgetall(keys.presence(room, self.shards))
            replies = await pipe.execute() if names else []
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis: {exc}") from exc
        now = time.time() * 1000
        return [
            {
                "room": room,
                "online": sum(1 for e in replies[2 * i + 1].values() if float(e) > now),
                "last_seq": int(replies[2 * i] or 0),
            }
            for i, room in enumerate(names)
        ]


def _payloads(entries: Any) -> list[str]:
    """The event JSON of each stream entry (field ``e``)."""
    return [str(fields["e"]) for _, fields in entries or ()]
