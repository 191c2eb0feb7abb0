"""Where a room's seq counter stands when Redis may not know: the rule that no seq is issued twice.

Redis holds each room's seq. A Redis that restarted may have lost its last writes (``appendfsync
everysec``), come back from an older snapshot, or come back empty, so its seq may be lower than
seqs already delivered to clients and stored. The publish scripts therefore issue seqs only for
a room verified under the running Redis process (its run id, which every restart changes; see
``shared/scripts.py``). Verifying raises the room's seq to the highest seq known anywhere this
gateway can look: the database (what the persisters stored) and this gateway's own last
delivered seq of the room. Every gateway also raises the seqs of its rooms to what it delivered
as soon as its subscriber reconnects (:meth:`SeqGuard.raise_to`), so a message that reached
clients through another gateway cannot be given a seq twice either.

The same path serves a room whose keys expired after ``CHAT_ROOM_IDLE_TTL_S`` idle: its seq is
simply missing, and the first publish or join verifies it again from the database.

Verification reads the database: after a Redis restart, or once an idle room expired, a room's
first publish answers ``unavailable`` while the database is unreachable (docs/architecture.md).

On a Redis Cluster a failover is such a restart (a promoted replica has its own run id), and the
replica may lack the last writes of its old primary: messages stored there whose ``WAIT`` failed
(answered ``unavailable``), which joins, history or the persister may nevertheless have read.
The gateway that published one remembers its seq (:meth:`SeqGuard.unreplicated`) until a later
publish of the room is replicated, and raises the room past it like a delivered seq: when it
verifies the room, and after its subscriber reconnects (docs/cluster.md, "Residual risks").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from shared import keys, scripts
from shared.errors import Unavailable
from shared.redis_client import AnyRedis, unavailable
from shared.store import Store

log = logging.getLogger(__name__)

# Rooms whose last publish was stored on a primary but not confirmed by a replica, remembered
# at most (the oldest are forgotten first).
UNREPLICATED_ROOMS = 10_000


class SeqGuard:
    """Verifies rooms' seqs against the store and what this gateway delivered."""

    def __init__(
        self,
        redis: AnyRedis,
        store: Store | None,
        shards: int,
        delivered: Callable[[str], int] = lambda room: 0,
        *,
        idle_ttl_ms: int | None = None,
    ) -> None:
        self._redis = redis
        self._store = store
        self._shards = shards
        self._delivered = delivered
        # Verifying (re)creates a room's seq: it expires like the rest of the room's keys.
        self._ttl: int | str = "" if idle_ttl_ms is None else idle_ttl_ms
        self._verify = redis.register_script(scripts.VERIFY)
        self._raise = redis.register_script(scripts.RAISE)
        self._unreplicated: dict[str, int] = {}  # room → highest seq stored, not replicated

    def unreplicated(self, room: str, seq: int) -> None:
        """A publish stored ``seq`` on the room's primary, but no replica confirmed it (the
        client got ``unavailable``): never let a primary without it issue it again."""
        last = self._unreplicated.pop(room, 0)
        self._unreplicated[room] = max(last, seq)  # now the newest entry
        while len(self._unreplicated) > UNREPLICATED_ROOMS:
            del self._unreplicated[next(iter(self._unreplicated))]

    def replicated(self, room: str, seq: int) -> None:
        """A replica confirmed ``seq``, hence every earlier seq of the room (replication keeps
        the primary's order): the remembered one, if not higher, is safe."""
        if self._unreplicated.get(room, seq + 1) <= seq:
            del self._unreplicated[room]

    def floor(self, room: str) -> int:
        """The highest seq of ``room`` this gateway delivered or saw stored unreplicated."""
        return max(self._delivered(room), self._unreplicated.get(room, 0))

    async def verify(self, room: str) -> int:
        """Raise ``room``'s seq past everything stored or delivered here and mark it verified
        under the running Redis; returns the seq (:class:`Unavailable` if the store fails)."""
        stored = 0
        if self._store is not None:
            try:
                stored = await asyncio.to_thread(self._store.last_seq, room)
            except Exception as exc:
                raise Unavailable(f"store: {exc}") from exc
        floor = max(stored, self.floor(room))
        with unavailable():
            seq = await self._verify(
                keys=[keys.seq(room, self._shards), keys.verified(room, self._shards)],
                args=[floor, self._ttl],
            )
        return int(seq)

    async def raise_to(self, heads: Mapping[str, int]) -> None:
        """Make each room's seq at least its head (after a reconnect, before anything else),
        and at least the seq this gateway saw stored unreplicated: that one is best effort (a
        promoted primary refuses writes until it has a replica again; :meth:`verify` raises
        the room anyway before this gateway publishes to it)."""
        await asyncio.gather(*(self._raise_one(room, head) for room, head in heads.items()))
        if not self._unreplicated:
            return
        rooms = list(self._unreplicated.items())
        results = await asyncio.gather(
            *(self._raise_one(room, seq) for room, seq in rooms), return_exceptions=True
        )
        failed = [r for (r, _), result in zip(rooms, results, strict=True) if result is not None]
        if failed:
            log.info("could not raise %d room(s) past unreplicated seqs yet", len(failed))

    async def _raise_one(self, room: str, floor: int) -> None:
        await self._raise(keys=[keys.seq(room, self._shards)], args=[floor, self._ttl])
