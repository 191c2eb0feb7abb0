"""Synchronous persist mode: insert into the database, then publish.

The comparison branch of the original project (``CHAT_PERSIST_MODE=sync``): storage sits in the
send path. A room's Redis lock keeps its seqs gapless and in order across gateways: ``RESERVE``
takes the lock and the next seq, the row is inserted, ``COMMIT`` logs and fans out (or gives the
seq back when the insert failed) and releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import orjson
from redis.asyncio.cluster import RedisCluster

from gateway.broker import Published
from gateway.seqs import SeqGuard
from shared import events, keys, scripts
from shared.config import Settings
from shared.errors import Unavailable
from shared.redis_client import REDIS_DOWN, AnyRedis, unavailable
from shared.scripts import FanOut, ReserveReply
from shared.store import Store

LOCK_TTL_MS = 10_000
LOCK_ATTEMPTS = 2000


class SyncPublisher:
    """Store first, then publish, one message of a room at a time."""

    def __init__(
        self, redis: AnyRedis, settings: Settings, store: Store | None, seqs: SeqGuard
    ) -> None:
        if store is None:
            raise ValueError("synchronous persist mode needs a store")
        self.settings = settings
        self.shards = settings.shards
        self.store = store
        self.seqs = seqs
        self.fan_out = FanOut.SPUBLISH if isinstance(redis, RedisCluster) else FanOut.PUBLISH
        self._reserve = redis.register_script(scripts.RESERVE)
        self._commit = redis.register_script(scripts.COMMIT)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # room → (lock, users)

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        # This process's senders to one room queue on a local lock, so only one of them at a
        # time contends (with the other gateways) for the room's Redis lock.
        lock, users = self._locks.get(room, (asyncio.Lock(), 0))
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                return await self._publish_locked(room, user, text, cid)
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)

    async def _publish_locked(self, room: str, user: str, text: str, cid: str | None) -> Published:
        token = uuid.uuid4().hex
        lock = keys.lock(room, self.shards)
        verified = keys.verified(room, self.shards)
        script_keys = [keys.seq(room, self.shards), keys.cid(room, user, cid or "", self.shards)]
        reserve_args: list[str | int] = [cid or "", token, LOCK_TTL_MS]
        with unavailable():
            for attempt in range(LOCK_ATTEMPTS):
                result = await self._reserve(keys=[*script_keys, lock, verified], args=reserve_args)
                if result[0] == ReserveReply.UNVERIFIED:
                    await self.seqs.verify(room)
                elif result[0] != ReserveReply.LOCKED:
                    break
                await asyncio.sleep(0.0005 * min(attempt + 1, 20))  # the room is busy
            else:
                raise Unavailable(f"room {room} stayed locked")
        if result[0] == ReserveReply.KNOWN_CID:
            return Published(orjson.loads(result[1]), duplicate=True)
        event = events.message(room, int(result[1]), user, text, int(result[2]), cid)
        commit_keys = [
            keys.seq(room, self.shards),
            keys.log(room, self.shards),
            keys.cid(room, user, cid or "", self.shards),
            lock,
            keys.room_rooms(room, self.shards),
        ]
        commit_args: list[str | int] = [
            events.encode(event),
            event["seq"],
            keys.channel(room, self.shards),
            self.settings.recent_log_size,
            int(self.settings.cid_window_s) if cid is not None else "",
            token,
            self.fan_out,
        ]
        try:
            await asyncio.to_thread(self.store.write, [event])
        except Exception as exc:
            with contextlib.suppress(*REDIS_DOWN):
                await self._commit(keys=commit_keys, args=[*commit_args, "abort", room])
            raise Unavailable(f"store: {exc}") from exc
        # Stored, not published if Redis fails now: the message comes back by history.
        with unavailable():
            await self._commit(keys=commit_keys, args=[*commit_args, "publish", room])
        return Published(event, duplicate=False)
