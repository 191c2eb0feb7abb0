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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from shared import keys, scripts
from shared.errors import Unavailable
from shared.redis_client import AnyRedis, unavailable
from shared.store import Store


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

    async def verify(self, room: str) -> int:
        """Raise ``room``'s seq past everything stored or delivered here and mark it verified
        under the running Redis; returns the seq (:class:`Unavailable` if the store fails)."""
        stored = 0
        if self._store is not None:
            try:
                stored = await asyncio.to_thread(self._store.last_seq, room)
            except Exception as exc:
                raise Unavailable(f"store: {exc}") from exc
        floor = max(stored, self._delivered(room))
        with unavailable():
            seq = await self._verify(
                keys=[keys.seq(room, self._shards), keys.verified(room, self._shards)],
                args=[floor, self._ttl],
            )
        return int(seq)

    async def raise_to(self, heads: Mapping[str, int]) -> None:
        """Make each room's seq at least its head (after a reconnect, before anything else)."""
        await asyncio.gather(
            *(
                self._raise(keys=[keys.seq(room, self._shards)], args=[head, self._ttl])
                for room, head in heads.items()
            )
        )
