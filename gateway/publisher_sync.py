"""Synchronous persist mode: insert into the database, then publish.

The comparison branch of the original project (``CHAT_PERSIST_MODE=sync``): storage sits in the
send path. A room's Redis lock keeps its seqs gapless and in order across gateways: ``RESERVE``
leases the room, takes the next seq and records the message as the room's *intent*; the row is
inserted; ``COMMIT`` logs and fans the intent out and drops the lock.

A seq is given back only when its insert surely failed (it raised before the commit was sent).
When the outcome is unknown (the commit's answer was lost) the seq stays the message's: the same
idempotent insert is run again, which settles it (the row is then stored either way) and the
message is published. If that fails too, the intent stays in Redis and whoever next leases the
room settles it before taking a seq of its own, so no seq is ever given to a second message;
the sender got ``unavailable`` and a resend with the same cid gets the original (shared/scripts.py,
docs/architecture.md "Synchronous persist mode").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from gateway.broker import Published
from gateway.seqs import SeqGuard
from shared import keys, scripts
from shared.config import Settings
from shared.errors import Unavailable
from shared.events import Message
from shared.redis_client import REDIS_DOWN, AnyRedis, unavailable
from shared.scripts import CommitMode, CommitReply, FanOut, ReserveReply
from shared.store import CommitUnknown, Store

log = logging.getLogger(__name__)

LOCK_TTL_MS = 10_000  # a room's lease: after it, another publisher may settle the intent
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

    async def close(self) -> None:
        """Nothing to release: the Redis client and the store belong to the broker and node."""

    async def _publish_locked(self, room: str, user: str, text: str, cid: str | None) -> Published:
        token = uuid.uuid4().hex
        body: dict[str, Any] = {"type": "message", "room": room, "user": user, "text": text}
        if cid is not None:
            body["cid"] = cid
        reserve_keys = [
            keys.seq(room, self.shards),
            keys.cid(room, user, cid or "", self.shards),
            keys.lock(room, self.shards),
            keys.verified(room, self.shards),
        ]
        reserve_args: list[str | int] = [
            cid or "",
            token,
            LOCK_TTL_MS,
            orjson.dumps(body)[:-1].decode(),  # the script appends seq and ts
        ]
        for attempt in range(LOCK_ATTEMPTS):
            with unavailable():
                result = await self._reserve(keys=reserve_keys, args=reserve_args)
            if result[0] == ReserveReply.RESERVED:
                return await self._settle(room, token, result[1], ours=True)
            if result[0] == ReserveReply.KNOWN_CID:
                return Published(orjson.loads(result[1]), duplicate=True)
            if result[0] == ReserveReply.PENDING:
                # An earlier message's write has an unknown outcome: settle it first.
                await self._settle(room, token, result[1], ours=False)
                continue
            if result[0] == ReserveReply.UNVERIFIED:
                await self.seqs.verify(room)
            await asyncio.sleep(0.0005 * min(attempt + 1, 20))  # the room is busy
        raise Unavailable(f"room {room} stayed locked")

    async def _settle(self, room: str, token: str, intent: str, *, ours: bool) -> Published:
        """Store the room's ``intent`` (an encoded message) and publish it. ``ours``: reserved by
        this call; else another message's, whose first write may have committed."""
        event: Message = orjson.loads(intent)
        conflicts: list[Mapping[str, Any]] = []
        try:
            await asyncio.to_thread(self.store.write, [event], conflicts.append)
        except CommitUnknown as exc:
            # The row may or may not be stored: the seq cannot be given back. The same insert
            # again stores it or finds it (the rows are unique on room and seq).
            log.warning("commit of %s #%d unknown (%s); writing it again", room, event["seq"], exc)
            try:
                await asyncio.to_thread(self.store.write, [event], conflicts.append)
            except Exception as again:
                await self._settle_quietly(room, token, intent, CommitMode.RELEASE)
                raise Unavailable(f"store: {again}") from again
        except Exception as exc:
            # Nothing was committed by this write; the intent's own first write, if it was
            # another publisher's, may have been: only its owner may give the seq back.
            mode = CommitMode.ABORT if ours else CommitMode.RELEASE
            await self._settle_quietly(room, token, intent, mode)
            raise Unavailable(f"store: {exc}") from exc
        if conflicts:
            # The database holds another message under this seq: it is that seq's message.
            log.error(
                "%s #%d is another message in the database; not published", room, event["seq"]
            )
            await self._settle_quietly(room, token, intent, CommitMode.BURN)
            raise Unavailable(f"seq {event['seq']} of {room} is taken")
        # Stored: if Redis fails now the intent stays, and the next publisher publishes it.
        with unavailable():
            result = await self._commit_call(room, token, intent, CommitMode.PUBLISH)
        if result[0] == CommitReply.DONE or result[1:] == [intent]:  # or published by another
            return Published(event, duplicate=False)
        raise Unavailable(f"{room} #{event['seq']} was settled by another publisher")

    async def _settle_quietly(self, room: str, token: str, intent: str, mode: CommitMode) -> None:
        with contextlib.suppress(*REDIS_DOWN):  # the lease lapses; the intent stays
            await self._commit_call(room, token, intent, mode)

    async def _commit_call(self, room: str, token: str, intent: str, mode: CommitMode) -> Any:
        event: Message = orjson.loads(intent)
        cid = event.get("cid")
        return await self._commit(
            keys=[
                keys.seq(room, self.shards),
                keys.log(room, self.shards),
                keys.cid(room, event["user"], cid or "", self.shards),
                keys.lock(room, self.shards),
                keys.room_rooms(room, self.shards),
                keys.verified(room, self.shards),
            ],
            args=[
                intent,
                event["seq"],
                keys.channel(room, self.shards),
                self.settings.recent_log_size,
                int(self.settings.cid_window_s) if cid is not None else "",
                token,
                self.fan_out,
                mode,
                room,
                self.settings.room_idle_ttl_ms,  # the room's keys expire when it goes idle
            ],
        )
