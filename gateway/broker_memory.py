"""The in-process broker: one process's rooms, no cross-gateway traffic.

The embedded default, and the "no Pub/Sub" experiment: two gateways with this broker only reach
their own clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from gateway.broker import Deliver, Published, RoomLog
from shared import events
from shared.errors import Unavailable
from shared.store import Store
from shared.stream_memory import MemoryStream

log = logging.getLogger(__name__)


class MemoryBroker:
    """Rooms, seqs, recent logs, ``cid`` memory and presence held in this process."""

    def __init__(
        self,
        *,
        log_size: int,
        cid_window_s: float,
        stream: MemoryStream | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        sync: bool = False,
    ) -> None:
        self._sync = sync
        self._locks: dict[str, asyncio.Lock] = {}
        self._store = store
        self._clock = clock
        self._seq: dict[str, int] = {}
        self._logs: dict[str, deque[dict[str, Any]]] = {}
        self._log_size = log_size
        self._cid_window_s = cid_window_s
        self._cids: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._cid_expiry: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._presence: dict[str, Counter[str]] = {}
        self._subscribed: set[str] = set()
        self._stream = stream
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        if self._store is not None:
            # Seqs continue after a restart from what the store holds.
            try:
                self._seq.update(await asyncio.to_thread(self._store.room_heads))
            except Exception as exc:
                log.warning("could not read room heads from the store: %r", exc)
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def ping(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        if not self._sync:
            return self._known(room, user, cid) or self._commit(self._next(room, user, text, cid))
        # Synchronous persist mode: store first; the room's lock keeps seqs gapless.
        async with self._locks.setdefault(room, asyncio.Lock()):
            known = self._known(room, user, cid)
            if known is not None:
                return known
            msg = self._next(room, user, text, cid)
            try:
                assert self._store is not None
                await asyncio.to_thread(self._store.write, [msg])
            except Exception as exc:
                raise Unavailable(f"store: {exc}") from exc
            return self._commit(msg)

    def _known(self, room: str, user: str, cid: str | None) -> Published | None:
        self._expire_cids(self._clock())
        known = None if cid is None else self._cids.get((room, user, cid))
        return None if known is None else Published(known, duplicate=True)

    def _next(self, room: str, user: str, text: str, cid: str | None) -> dict[str, Any]:
        seq = self._seq.get(room, 0) + 1
        return events.message(room, seq, user, text, events.now_ms(), cid)

    def _commit(self, msg: dict[str, Any]) -> Published:
        room, seq, cid = msg["room"], msg["seq"], msg.get("cid")
        self._seq[room] = seq
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = deque(maxlen=self._log_size)
        log.append(msg)
        if cid is not None:
            key = (room, msg["user"], cid)
            self._cids[key] = msg
            self._cid_expiry.append((self._clock() + self._cid_window_s, key))
        if self._stream is not None and not self._sync:
            self._stream.append(msg)
        self._fan_out(room, seq, msg)
        return Published(msg, duplicate=False)

    def _expire_cids(self, now: float) -> None:
        expiry = self._cid_expiry
        while expiry and expiry[0][0] <= now:
            self._cids.pop(expiry.popleft()[1], None)

    def _fan_out(self, room: str, seq: int, event: dict[str, Any]) -> None:
        if self._deliver is not None and room in self._subscribed:
            self._deliver(room, seq, event.get("ts", 0), events.encode(event))

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def recent(self, room: str, since: int | None, limit: int) -> RoomLog:
        log = self._logs.get(room, ())
        if since is None:
            messages = list(log)[-limit:] if limit else []
        else:
            messages = [m for m in log if m["seq"] > since]
        return RoomLog(self._seq.get(room, 0), messages)

    async def older(self, room: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        log = self._logs.get(room, ())
        return [m for m in log if before is None or m["seq"] < before][-limit:]

    async def presence_join(self, room: str, user: str) -> None:
        users = self._presence.setdefault(room, Counter())
        users[user] += 1
        if users[user] == 1:
            self._membership("join", room, user)
            self._fan_out(room, 0, events.presence(room, [user], []))

    async def presence_leave(self, room: str, user: str) -> None:
        users = self._presence.get(room)
        if users is None or users[user] <= 0:
            return
        users[user] -= 1
        if users[user] == 0:
            del users[user]
            if not users:
                del self._presence[room]
            self._membership("leave", room, user)
            self._fan_out(room, 0, events.presence(room, [], [user]))

    def _membership(self, kind: str, room: str, user: str) -> None:
        if self._stream is not None:
            self._stream.append({"type": kind, "room": room, "user": user, "ts": events.now_ms()})

    async def members(self, room: str) -> list[str]:
        return sorted(self._presence.get(room, ()))

    async def rooms(self) -> list[dict[str, Any]]:
        names = set(self._seq) | set(self._presence)
        return [
            {"room": r, "online": len(self._presence.get(r, ())), "last_seq": self._seq.get(r, 0)}
            for r in sorted(names)
        ]
