"""Publishing to Redis: one script call assigns the seq, logs, queues for storage and fans out.

The strategy is chosen once, by :func:`publisher_for`:

- :class:`ScriptPublisher`: one Redis (or a cluster without replica acknowledgements): the
  ``PUBLISH`` script does everything atomically, every key of a room in one cluster slot.
- :class:`ReplicatedPublisher`: a Redis Cluster with ``CHAT_REDIS_REPLICA_ACKS``: the script
  stores without fanning out, ``WAIT`` follows on the same connection, and the message is
  published only once a replica has it, so a failover can neither lose an acknowledged message
  nor reuse its seq.
- :class:`~gateway.publisher_sync.SyncPublisher`: ``CHAT_PERSIST_MODE=sync`` (database first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError

from gateway.broker import Published, Publisher
from gateway.pipeline import CommandPipe
from gateway.publisher_sync import SyncPublisher
from gateway.seqs import SeqGuard
from shared import keys, scripts
from shared.config import Settings
from shared.errors import Unavailable
from shared.redis_client import NOREPLICAS, REDIS_DOWN, AnyRedis
from shared.scripts import FanOut, PublishReply
from shared.store import Store

FAN_OUT_ARG = 4  # ARGV[5] of the PUBLISH script, 0-based


class ScriptPublisher:
    """One ``PUBLISH`` script call per message (seeding the room's seq first if it is new).

    On one Redis the calls go through a :class:`~gateway.pipeline.CommandPipe`: the publishes of
    one loop tick share a round trip. (A cluster client routes each call to its slot's node.)
    """

    def __init__(self, redis: AnyRedis, settings: Settings, seqs: SeqGuard) -> None:
        self.redis = redis
        self.settings = settings
        self.shards = settings.shards
        self.seqs = seqs
        self.fan_out = FanOut.SPUBLISH if isinstance(redis, RedisCluster) else FanOut.PUBLISH
        self.script = redis.register_script(scripts.PUBLISH)
        self.pipe = CommandPipe(redis) if isinstance(redis, Redis) else None

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        body: dict[str, Any] = {"type": "message", "room": room, "user": user, "text": text}
        if cid is not None:
            body["cid"] = cid
        script_keys = [
            keys.seq(room, self.shards),
            keys.log(room, self.shards),
            keys.room_persist(room, self.shards),
            keys.cid(room, user, cid or "", self.shards),
            keys.verified(room, self.shards),
            keys.room_rooms(room, self.shards),
        ]
        args: list[str | int] = [
            orjson.dumps(body)[:-1].decode(),  # the script appends seq and ts
            keys.channel(room, self.shards),
            self.settings.recent_log_size,
            int(self.settings.cid_window_s) if cid is not None else "",
            self.fan_out,
            room,
            self.settings.room_idle_ttl_ms,  # the room's keys expire when it goes idle
        ]
        try:
            result = await self._run(script_keys, args)
            if result[0] == PublishReply.UNVERIFIED:
                await self.seqs.verify(room)
                result = await self._run(script_keys, args)
        except REDIS_DOWN as exc:
            await self.on_failure()
            raise Unavailable(f"redis: {exc}") from exc
        return Published(orjson.loads(result[1]), duplicate=result[0] == PublishReply.KNOWN_CID)

    async def _run(self, script_keys: list[str], args: list[str | int]) -> Any:
        if self.pipe is None:
            return await self.script(keys=script_keys, args=args)
        n = len(script_keys)
        try:
            return await self.pipe.call("EVALSHA", self.script.sha, n, *script_keys, *args)
        except NoScriptError:  # a restarted Redis: the script did not run, send it whole
            return await self.pipe.call("EVAL", self.script.script, n, *script_keys, *args)

    async def close(self) -> None:
        """Fail what is still pipelined and close its connection."""
        if self.pipe is not None:
            await self.pipe.close()

    async def on_failure(self) -> None:
        """Redis failed a publish (a hook for the cluster's slot map)."""


class ReplicatedPublisher(ScriptPublisher):
    """The script, then ``WAIT`` on the same connection, then the fan-out.

    A message is acknowledged, and fanned out, only once ``redis_replica_acks`` replicas have
    it. (The cluster client's own ``wait()`` goes to every primary on other connections.)

    A primary with no replica in sync refuses the script before it writes anything
    (``min-replicas-to-write``: ``NOREPLICAS``), answered ``unavailable``. A message the
    primary stored but no replica confirmed is answered ``unavailable`` too, and its seq is
    remembered (:meth:`SeqGuard.unreplicated`) so that, should a replica without it be
    promoted, this gateway never lets the seq be issued again (docs/cluster.md).
    """

    def __init__(self, redis: RedisCluster, settings: Settings, seqs: SeqGuard) -> None:
        super().__init__(redis, settings, seqs)
        self.cluster = redis
        # Node connections are not queued for: bound concurrent publishes instead.
        self._publishing = asyncio.Semaphore(max(1, settings.redis_pool_size // 2))
        self._last_refresh = 0.0

    async def _run(self, script_keys: list[str], args: list[str | int]) -> Any:
        async with self._publishing:
            return await self._replicated(script_keys, args)

    async def _replicated(self, script_keys: list[str], args: list[str | int]) -> Any:
        acks, timeout = self.settings.redis_replica_acks, self.settings.redis_ack_timeout_ms
        channel, room = str(args[1]), str(args[5])
        script = self.script
        call: list[Any] = ["EVALSHA", script.sha, len(script_keys), *script_keys, *args]
        call[3 + len(script_keys) + FAN_OUT_ARG] = FanOut.NONE  # stored only: published below
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
            if isinstance(result, ResponseError) and str(result).startswith(NOREPLICAS):
                # min-replicas-to-write: the primary lost its replicas and refused the script's
                # first write, so nothing of this message exists anywhere.
                raise Unavailable(f"the primary has no replica in sync: {result}")
            if isinstance(result, Exception):
                raise result
            if result[0] == PublishReply.UNVERIFIED:
                return result  # nothing written: the caller verifies the room and calls again
            if result[0] == PublishReply.KNOWN_CID:
                # A resend: the script wrote nothing. WAIT counts the replicas that have this
                # connection's last write; Redis 7.0 moves that mark on every command, later
                # versions only on a command that propagates, so there this WAIT would say
                # nothing of the original (written earlier, perhaps through another gateway,
                # perhaps never replicated). Write its cid key again (same value, same ttl) and
                # wait for that write.
                replicated = await self._rewritten(script_keys[3], result[1], acks, timeout)
            seq = int(orjson.loads(result[1])["seq"])
            if isinstance(replicated, Exception) or int(replicated) < acks:
                # Stored on the primary, maybe not beyond: the client resends with the same cid,
                # which is idempotent on whichever node then answers. Should a replica without
                # it be promoted, this seq is never issued again by this gateway.
                self.seqs.unreplicated(room, seq)
                raise Unavailable(f"not replicated to {acks} replica(s) within {timeout} ms")
            self.seqs.replicated(room, seq)
            # A known cid is published again: its first attempt may never have been
            # (gateways drop seqs they already delivered).
            [published] = await self._on_primary(script_keys[0], [["SPUBLISH", channel, result[1]]])
            if isinstance(published, Exception):
                raise published
            return result
        raise Unavailable(f"the slot of {script_keys[0]} keeps moving")

    async def _rewritten(self, cid_key: str, event: str, acks: int, timeout: int) -> Any:
        """``SET cid event XX KEEPTTL`` then ``WAIT`` on one connection: the replicas that have
        everything the primary held when it found the cid (an error, or 0, if it cannot tell).
        """
        written, replicated = await self._on_primary(
            cid_key, [["SET", cid_key, event, "XX", "KEEPTTL"], ["WAIT", acks, timeout]]
        )
        if isinstance(written, Exception) or written is None:  # NOREPLICAS, moved, expired
            return written if isinstance(written, Exception) else 0
        return replicated

    async def _on_primary(self, key: str, commands: list[list[Any]]) -> list[Any]:
        """Send ``commands`` pipelined on one connection to the primary owning ``key``; error
        replies are returned, not raised."""
        node = self.cluster.get_node_from_key(key)
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

    async def on_failure(self) -> None:
        await self._refresh_slots()

    async def _refresh_slots(self, force: bool = False) -> None:
        """Re-read the cluster's slot map (at most twice a second unless forced)."""
        if not force and time.monotonic() - self._last_refresh < 0.5:
            return
        self._last_refresh = time.monotonic()
        with contextlib.suppress(*REDIS_DOWN):  # the next publish tries again
            await self.cluster.nodes_manager.initialize()


def publisher_for(
    redis: AnyRedis, settings: Settings, store: Store | None, seqs: SeqGuard | None = None
) -> Publisher:
    """The publisher the settings and the Redis deployment call for."""
    seqs = seqs or SeqGuard(redis, store, settings.shards, idle_ttl_ms=settings.room_idle_ttl_ms)
    if settings.persist_mode == "sync":
        return SyncPublisher(redis, settings, store, seqs)
    if isinstance(redis, RedisCluster) and settings.redis_replica_acks > 0:
        return ReplicatedPublisher(redis, settings, seqs)
    return ScriptPublisher(redis, settings, seqs)
