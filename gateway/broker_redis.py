"""The Redis broker: gateways share rooms through one Redis or a Redis Cluster.

Publishing is one script call (seq, log, persist stream, publish: atomic; every key of a room is
in one cluster slot). Every gateway subscribes to the rooms that have local members (plain pub/sub
on one Redis, sharded pub/sub on a cluster: ``gateway.subscriber``), read by one owned task. When a
subscriber connection is lost, or the cluster's topology changes, the task reconnects with
backoff, re-resolves, resubscribes, and replays each room's log after the last seq it saw, so
local clients miss nothing. On a cluster a publish is acknowledged only once a replica has it
(``WAIT`` on the same connection), so a primary's failover loses no acknowledged message.
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
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, ResponseError

from gateway.broker import Deliver, Published, RoomLog
from gateway.subscriber import Subscriber, subscriber_for
from shared import events, keys, redis_client, scripts
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
        # Bounded connections and no automatic retries: a publish retried after a lost reply
        # could publish twice.
        self.redis = redis_client.connect(settings.redis_url, pool_size=settings.redis_pool_size)
        self.cluster = isinstance(self.redis, RedisCluster)
        self._sharded = "1" if self.cluster else "0"  # the scripts publish with SPUBLISH
        # On a cluster, node connections are not queued for: bound concurrent publishes instead.
        self._publishing = asyncio.Semaphore(max(1, settings.redis_pool_size // 2))
        self._last_refresh = 0.0
        self._publish = self.redis.register_script(scripts.PUBLISH)
        self._presence = self.redis.register_script(scripts.PRESENCE)
        self._sweep = self.redis.register_script(scripts.SWEEP)
        self._reserve = self.redis.register_script(scripts.RESERVE)
        self._commit = self.redis.register_script(scripts.COMMIT)
        self.sync = settings.persist_mode == "sync"
        self._sync_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._deliver: Deliver | None = None
        self._subscriber: Subscriber | None = None
        self._channels: dict[str, str] = {}  # channel → room, for subscribed rooms
        self._heads: dict[str, int] = {}  # room → last seq delivered to the hub
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
        await self._drop_subscriber()
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
            keys.room_persist(room, self.shards),
            keys.cid(room, user, cid or "", self.shards),
        ]
        args: list[str | int] = [
            orjson.dumps(body)[:-1].decode(),
            keys.channel(room, self.shards),
            self.settings.recent_log_size,
            int(self.settings.cid_window_s) if cid is not None else "",
            self._sharded,
        ]
        try:
            result = await self._run_publish(script_keys, args)
            if result[0] == 2:
                await self._seed(room)
                result = await self._run_publish(script_keys, args)
        except REDIS_DOWN as exc:
            await self._refresh_slots()
            raise Unavailable(f"redis: {exc}") from exc
        return Published(orjson.loads(result[1]), duplicate=result[0] == 1)

    async def _run_publish(self, script_keys: list[str], args: list[str | int]) -> Any:
        if self.cluster and self.settings.redis_replica_acks > 0:
            async with self._publishing:
                return await self._publish_replicated(script_keys, args)
        return await self._publish(keys=script_keys, args=args)

    async def _publish_replicated(self, script_keys: list[str], args: list[str | int]) -> Any:
        """The publish script, then ``WAIT`` on the same connection, then the fan-out: a message
        is acknowledged, and seen by anyone, only once ``redis_replica_acks`` replicas have it,
        so a failover can neither lose it nor reuse its seq for another message.

        (The cluster client's own ``wait()`` goes to every primary on other connections.)
        """
        acks, timeout = self.settings.redis_replica_acks, self.settings.redis_ack_timeout_ms
        channel = str(args[1])
        script = self._publish
        # ARGV[5] "2": the script stores but does not publish; we do, once replicated.
        call: list[Any] = ["EVALSHA", script.sha, len(script_keys), *script_keys, *args[:-1], "2"]
        for _ in range(3):
            result, replicated = await self._on_primary(
                script_keys[0], [call, ["WAIT", acks, timeout]]
            )
            if isinstance(result, NoScriptError):
                call[:2] = ["EVAL", script.script]  # e.g. a freshly promoted replica
                continue
            if isinstance(result, MovedError | AskError):
                await self._refresh_slots(force=True)  # the script did not run there
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(replicated, Exception) or int(replicated) < acks:
                # Stored on the primary, maybe not beyond: the client resends with the same cid,
                # which is idempotent on whichever node then answers.
                raise Unavailable(f"not replicated to {acks} replica(s) within {timeout} ms")
            if result[0] != 2:
                # A known cid is published again: its first attempt may never have been
                # (gateways drop seqs they already delivered).
                [published] = await self._on_primary(
                    script_keys[0], [["SPUBLISH", channel, result[1]]]
                )
                if isinstance(published, Exception):
                    raise published
            return result
        raise Unavailable(f"the slot of {script_keys[0]} keeps moving")

    async def _on_primary(self, key: str, commands: list[list[Any]]) -> list[Any]:
        """Send ``commands`` pipelined on one connection to the primary owning ``key``; error
        replies are returned, not raised."""
        assert isinstance(self.redis, RedisCluster)
        node = self.redis.get_node_from_key(key)
        if node is None:
            raise Unavailable(f"no node owns {key}")
        conn = node.acquire_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # an error reply; the connection is fine
                    replies.append(exc)
        except BaseException:
            await conn.disconnect()  # half-read: never reuse it
            raise
        finally:
            node.release(conn)
        return replies

    async def _refresh_slots(self, force: bool = False) -> None:
        """Re-read the cluster's slot map (at most twice a second unless forced)."""
        if not self.cluster or (not force and time.monotonic() - self._last_refresh < 0.5):
            return
        self._last_refresh = time.monotonic()
        assert isinstance(self.redis, RedisCluster)
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.nodes_manager.initialize()

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
            self._sharded,
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
            assert self._subscriber is not None
            await self._subscriber.subscribe(channel)
            head = await self.redis.get(keys.seq(room, self.shards))
        except REDIS_DOWN as exc:
            self._channels.pop(channel, None)
            raise Unavailable(f"redis: cannot subscribe to {room}: {exc!r}") from exc
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
        backoff = 0.05
        while True:
            try:
                await self._connect()
                backoff = 0.05
                assert self._subscriber is not None
                await self._subscriber.run()
            except REDIS_DOWN as exc:
                if self.connected.is_set():
                    log.warning("redis subscriber lost: %r; reconnecting", exc)
                self.connected.clear()
                await self._drop_subscriber()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _connect(self) -> None:
        self._subscriber = subscriber_for(self.redis, self._on_message)
        channels = list(self._channels)
        await self._subscriber.open(channels)
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
        # seq and recover from the database with ``join since``.
        self._heads[room] = seq - 1
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
        try:
            last, entries = await pipe.execute()
            if last is None and self.store is not None:
                # No seq key: a new room, or a Redis that lost its data while the database kept
                # the room's history. Continue from the database, as the next publish will.
                await self._seed(room)
                last = await self.redis.get(keys.seq(room, self.shards))
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
                keys.room_persist(room, self.shards),
            ],
            "args": [
                user,
                self.gateway,
                expiry,
                keys.channel(room, self.shards),
                change,
                self._sharded,
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
                    keys.room_persist(room, self.shards),
                ],
                args=[
                    keys.channel(room, self.shards),
                    self._sharded,
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
