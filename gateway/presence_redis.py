"""Presence shared by every gateway through Redis.

Per room, a hash of user → expiry and, per user, a sorted set of the gateways she is on (score:
expiry). The ``PRESENCE`` script changes both atomically and tells the room (and the persister)
only when the user's presence really changes: first gateway in, last gateway out. Each gateway
refreshes its users' entries every third of ``CHAT_PRESENCE_TTL_S`` (one owned task), and sweeps
the rooms it holds for users whose gateways all stopped refreshing (a crashed gateway), so
nobody stays online for longer than the TTL after her gateway died. A room's hash expires with
its latest entry.

The same task samples Redis memory (``INFO memory`` of every node) for the
``chat_redis_*memory_bytes`` gauges the "Redis memory high" alert reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from redis.asyncio.cluster import RedisCluster

from gateway.presence import ROOMS_LISTED, RoomInfo
from gateway.supervisor import Supervised
from shared import keys, scripts
from shared.config import Settings
from shared.metrics import GatewayMetrics
from shared.redis_client import NOREPLICAS, REDIS_DOWN, AnyRedis, unavailable
from shared.scripts import FanOut

log = logging.getLogger(__name__)

KEEP_USERS_PER_CALL = 500  # a big room's users over several KEEP calls (one script runs alone)
KEEP_CALLS_PER_PIPELINE = 100  # a round's calls over several round trips (see refresh)

ROOMS_CACHE_S = 2.0  # /api/rooms answers from a copy this fresh


class RedisPresence:
    """This gateway's users in Redis, kept alive by one refresh task."""

    def __init__(
        self, redis: AnyRedis, settings: Settings, metrics: GatewayMetrics | None = None
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self._memory_nodes: set[str] = set()  # nodes with a memory sample reported
        self.shards = settings.shards
        self.gateway = settings.gateway_id
        self.fan_out = FanOut.SPUBLISH if isinstance(redis, RedisCluster) else FanOut.PUBLISH
        self._presence = redis.register_script(scripts.PRESENCE)
        self._local: Counter[tuple[str, str]] = Counter()  # (room, user) → local connections
        self.keeper = Supervised("redis-presence", self._keep)
        self._rooms_cache: tuple[float, list[RoomInfo]] | None = None

    async def start(self) -> None:
        self.keeper.start()

    async def close(self) -> None:
        await self.keeper.stop()

    def tasks(self) -> list[Supervised]:
        return [self.keeper]

    def _script_args(self, room: str, user: str, change: str) -> dict[str, Any]:
        expiry = int(time.time() * 1000) + int(self.settings.presence_ttl_s * 1000)
        return {
            "keys": [
                keys.presence(room, self.shards),
                keys.presence_user(room, user, self.shards),
                keys.room_persist(room, self.shards),
                keys.room_rooms(room, self.shards),
            ],
            "args": [
                user,
                self.gateway,
                expiry,
                keys.channel(room, self.shards),
                change,
                self.fan_out,
                room,
                self.settings.room_idle_ttl_ms,
            ],
        }

    async def join(self, room: str, user: str) -> None:
        self._local[(room, user)] += 1
        if self._local[(room, user)] > 1:
            return
        try:
            with unavailable():
                await self._presence(**self._script_args(room, user, "join"))
        except BaseException:
            self._local[(room, user)] -= 1
            if not self._local[(room, user)]:
                del self._local[(room, user)]
            raise

    async def leave(self, room: str, user: str) -> None:
        if self._local[(room, user)] <= 0:
            return
        self._local[(room, user)] -= 1
        if self._local[(room, user)]:
            return
        del self._local[(room, user)]
        with unavailable():  # if it fails, the entry expires on its own within the TTL
            await self._presence(**self._script_args(room, user, "leave"))

    async def members(self, room: str) -> list[str]:
        with unavailable():
            fields = await self.redis.hgetall(keys.presence(room, self.shards))
        now = time.time() * 1000
        return sorted(str(user) for user, expiry in fields.items() if float(expiry) > now)

    async def _keep(self) -> None:
        """Refresh our users' presence; expire users of gateways that stopped refreshing.

        Any failure ends this body; the supervisor runs it again after a backoff."""
        interval = self.settings.presence_ttl_s / 3
        if self.keeper.restarts:  # after a failure: up only once Redis took a refresh again
            await self._refresh()
        self.keeper.up()
        await self.sample_memory()
        while True:
            await asyncio.sleep(interval)
            await self.sample_memory()  # first: a Redis failing the refresh loses its samples
            await self._refresh()
            self.keeper.up()

    async def sample_memory(self) -> None:
        """Set ``chat_redis_used_memory_bytes`` and ``chat_redis_maxmemory_bytes`` for every
        Redis node (``host:port``). A node that does not answer loses its samples rather than
        keeping stale ones; it never fails presence."""
        if self.metrics is None:
            return
        if isinstance(self.redis, RedisCluster):
            nodes = {node.name: node for node in self.redis.get_nodes()}
            replies = await asyncio.gather(
                *(self.redis.info("memory", target_nodes=node) for node in nodes.values()),
                return_exceptions=True,
            )
            infos = dict(zip(nodes, replies, strict=True))
        else:
            pool = self.redis.connection_pool.connection_kwargs
            name = str(pool.get("path") or f"{pool.get('host')}:{pool.get('port')}")
            try:
                infos = {name: await self.redis.info("memory")}
            except REDIS_DOWN as exc:
                infos = {name: exc}
        used, limit = self.metrics.redis_used_memory, self.metrics.redis_maxmemory
        sampled = {name: info for name, info in infos.items() if isinstance(info, dict)}
        for name in infos.keys() - sampled.keys():
            log.debug("INFO memory of %s failed: %r", name, infos[name])
        for name in self._memory_nodes - sampled.keys():
            used.remove(name)
            limit.remove(name)
        for name, info in sampled.items():
            used.labels(name).set(int(info["used_memory"]))
            limit.labels(name).set(int(info.get("maxmemory", 0)))
        self._memory_nodes = set(sampled)

    async def _refresh(self) -> None:
        await self.refresh(list(self._local))

    async def refresh(self, entries: list[tuple[str, str]]) -> None:
        """Extend the presence of these (room, user) entries of ours, and in their rooms expire
        the users whose gateways stopped refreshing: one ``KEEP`` call per room, pipelined
        ``KEEP_CALLS_PER_PIPELINE`` to a round trip. An entry whose user left meanwhile stays
        gone; one whose presence expired while she is still here (Redis was away longer than
        the TTL) is announced again."""
        if not entries:
            return
        by_room: dict[str, list[str]] = {}
        for room, user in entries:
            by_room.setdefault(room, []).append(user)
        expiry = int(time.time() * 1000) + int(self.settings.presence_ttl_s * 1000)
        sha = await self.redis.script_load(scripts.KEEP)  # after a restart it is gone
        calls: list[tuple[str, list[str], bool]] = []  # (room, users, sweeps) of each call
        for room, users in by_room.items():
            for start in range(0, len(users), KEEP_USERS_PER_CALL):
                last = start + KEEP_USERS_PER_CALL >= len(users)
                calls.append((room, users[start : start + KEEP_USERS_PER_CALL], last))
        refused = 0
        missing: list[tuple[str, str]] = []
        # Packing a thousand calls and parsing their replies is tens of ms of CPU in one go:
        # the gateway would write nothing meanwhile. A bounded pipeline at a time lets the
        # event loop run between them.
        for first in range(0, len(calls), KEEP_CALLS_PER_PIPELINE):
            chunk = calls[first : first + KEEP_CALLS_PER_PIPELINE]
            results = await self._keep_calls(sha, expiry, chunk)
            refused += self._refused(results)
            for (room, _, _), result in zip(chunk, results, strict=True):
                if not isinstance(result, Exception):
                    missing.extend((room, user) for user in result)
        for room, user in missing:
            if self._local[(room, user)] > 0:
                await self._presence(**self._script_args(room, user, "join"))
        if refused:
            log.info("%d rooms' presence not kept this round: their shard has no replica", refused)

    async def _keep_calls(
        self, sha: str, expiry: int, calls: list[tuple[str, list[str], bool]]
    ) -> list[Any]:
        """Run these ``KEEP`` calls in one pipelined round trip; a reply per call (an error is
        returned, not raised)."""
        pipe = self.redis.pipeline(transaction=False)
        for room, users, sweeps in calls:
            hash_key = keys.presence(room, self.shards)
            # execute_command: a cluster pipeline refuses its ``evalsha`` method, not the
            # command (routed by the keys, which share the room's slot).
            pipe.execute_command(
                "EVALSHA",
                sha,
                2 + len(users),
                hash_key,
                keys.room_persist(room, self.shards),
                *(keys.presence_user(room, user, self.shards) for user in users),
                self.gateway,
                expiry,
                keys.channel(room, self.shards),
                self.fan_out,
                room,
                hash_key + "#",
                "1" if sweeps else "0",
                *users,
            )
        return await pipe.execute(raise_on_error=False)

    @staticmethod
    def _refused(results: list[Any]) -> int:
        """How many of a pipeline's replies are ``NOREPLICAS`` refusals; raises any other
        error. A cluster shard without a replica refuses writes (min-replicas-to-write): its
        rooms wait for the next round; the others went through."""
        refused = 0
        for result in results:
            if isinstance(result, Exception):
                if NOREPLICAS not in str(result):
                    raise result
                refused += 1
        return refused

    async def rooms(self) -> list[RoomInfo]:
        """The most recently active rooms (at most ``ROOMS_LISTED``), from the shards' rooms
        indexes: a fixed number of commands, whatever else the keyspace holds. Cached briefly:
        every open page polls it."""
        now = time.monotonic()
        if self._rooms_cache is not None and now - self._rooms_cache[0] < ROOMS_CACHE_S:
            return self._rooms_cache[1]
        with unavailable():
            pipe = self.redis.pipeline(transaction=False)
            # Rooms idle for longer than their keys live are not listed (scripts.py trims them).
            active_since = int(time.time() * 1000) - self.settings.room_idle_ttl_ms
            for shard in range(self.shards):
                pipe.zrevrangebyscore(
                    keys.rooms(shard, self.shards),
                    "+inf",
                    active_since,
                    start=0,
                    num=ROOMS_LISTED,
                    withscores=True,
                )
            active = [pair for pairs in await pipe.execute() for pair in pairs]
            active.sort(key=lambda pair: pair[1], reverse=True)
            names = sorted(str(room) for room, _ in active[:ROOMS_LISTED])
            pipe = self.redis.pipeline(transaction=False)
            for room in names:
                pipe.get(keys.seq(room, self.shards))
                pipe.hgetall(keys.presence(room, self.shards))
            replies = await pipe.execute() if names else []
        now_ms = time.time() * 1000
        listed: list[RoomInfo] = [
            {
                "room": room,
                "online": sum(1 for e in replies[2 * i + 1].values() if float(e) > now_ms),
                "last_seq": int(replies[2 * i] or 0),
            }
            for i, room in enumerate(names)
        ]
        self._rooms_cache = (now, listed)
        return listed
