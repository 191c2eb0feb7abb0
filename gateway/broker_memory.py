"""The in-process broker: one process's rooms, no cross-gateway traffic.

The embedded default, and the "no Pub/Sub" experiment: two gateways with this broker only reach
their own clients. Its presence twin is ``gateway/presence_memory.py``.

Like Redis keys (``CHAT_ROOM_IDLE_TTL_S``), a room's entries here go once it has had no member
and no publish for ``idle_ttl_s``: its seq is read back from the store when it is used again.

In synchronous persist mode (``sync``) a message is stored before it is published, one message of
a room at a time, as in ``gateway/publisher_sync.py``: a seq is given back only when its write
surely failed. When the outcome is unknown (``CommitUnknown``) the same idempotent write runs
again at once; if that fails too, the message stays the room's *pending* message (the room is
not pruned meanwhile), and the room's next publish (a resend of it included) stores and
publishes it under its seq before taking a seq of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from gateway.broker import Deliver, Published, RoomLog
from gateway.supervisor import Supervised
from shared import events
from shared.errors import Unavailable
from shared.events import Message, PresenceEvent
from shared.store import CommitUnknown, Store
from shared.stream_memory import MemoryStream

logger = logging.getLogger(__name__)


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
        idle_ttl_s: float | None = None,
    ) -> None:
        self._sync = sync
        self._idle_ttl_s = idle_ttl_s  # None: rooms are kept for the life of the process
        # Rooms holding entries, least recently active (published, joined, left) first.
        self._active: OrderedDict[str, float] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        # sync mode: room → the message whose seq was taken and whose row may be stored.
        self._pending: dict[str, Message] = {}
        self._store = store
        self._clock = clock
        self._seq: dict[str, int] = {}
        self._logs: dict[str, deque[Message]] = {}
        self._log_size = log_size
        self._cid_window_s = cid_window_s
        self._cids: dict[tuple[str, str, str], Message] = {}
        self._cid_expiry: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._subscribed: set[str] = set()
        self._stream = stream
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        if self._store is not None:
            # Seqs continue after a restart from what the store holds.
            try:
                heads = await asyncio.to_thread(self._store.room_heads)
            except Exception as exc:
                # Not fatal: each room's seq is read from the store when it is first used.
                logger.warning("could not read room heads from the store: %r", exc)
            else:
                self._seq.update(heads)
                for room in heads:
                    self._touch(room)
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def ping(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def tasks(self) -> list[Supervised]:
        return []

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        await self._head(room)
        self._touch(room)
        if not self._sync:
            return self._known(room, user, cid) or self._commit(self._next(room, user, text, cid))
        # Synchronous persist mode: store first; the room's lock keeps seqs gapless.
        async with self._locks.setdefault(room, asyncio.Lock()):
            pending = self._pending.get(room)
            if pending is not None:
                # An earlier message's write has an unknown outcome: settle it first (a resend
                # of it then finds its cid below).
                await self._settle(pending, ours=False)
            known = self._known(room, user, cid)
            if known is not None:
                return known
            msg = self._next(room, user, text, cid)
            # Pending from now until the write's outcome is known (a cancelled publish leaves
            # it pending: its write may still run).
            self._pending[room] = msg
            return await self._settle(msg, ours=True)

    async def _settle(self, msg: Message, *, ours: bool) -> Published:
        """Store the room's pending ``msg`` and publish it; the room's lock is held. ``ours``:
        its seq was taken by this call, so a write that surely failed gives the seq back."""
        assert self._store is not None
        room, seq = msg["room"], msg["seq"]
        conflicts: list[object] = []
        try:
            await asyncio.to_thread(self._store.write, [msg], conflicts.append)
        except CommitUnknown as exc:
            # The row may or may not be stored: the seq cannot be given back. The same insert
            # again stores it or finds it (rows are unique on room and seq).
            logger.warning("commit of %s #%d unknown (%s); writing it again", room, seq, exc)
            try:
                await asyncio.to_thread(self._store.write, [msg], conflicts.append)
            except Exception as again:
                raise Unavailable(f"store: {again}") from again  # still pending
        except Exception as exc:
            # Nothing of this write was committed; an earlier write of a pending message that
            # was not ours may have been: it stays pending.
            if ours:
                del self._pending[room]
            raise Unavailable(f"store: {exc}") from exc
        del self._pending[room]
        if conflicts:
            # The database holds another message under this seq: it is that seq's message.
            logger.error("%s #%d is another message in the database; not published", room, seq)
            self._seq[room] = seq  # burned: join since reads it from the store
            raise Unavailable(f"seq {seq} of {room} is taken")
        return self._commit(msg)

    def _known(self, room: str, user: str, cid: str | None) -> Published | None:
        self._expire_cids(self._clock())
        known = None if cid is None else self._cids.get((room, user, cid))
        return None if known is None else Published(known, duplicate=True)

    def _next(self, room: str, user: str, text: str, cid: str | None) -> Message:
        seq = self._seq.get(room, 0) + 1
        return events.message(room, seq, user, text, events.now_ms(), cid)

    def _commit(self, msg: Message) -> Published:
        room, seq, cid = msg["room"], msg["seq"], msg.get("cid")
        self._seq[room] = seq
        room_log = self._logs.get(room)
        if room_log is None:
            room_log = self._logs[room] = deque(maxlen=self._log_size)
        room_log.append(msg)
        if cid is not None:
            key = (room, msg["user"], cid)
            self._cids[key] = msg
            self._cid_expiry.append((self._clock() + self._cid_window_s, key))
        if self._stream is not None and not self._sync:
            self._stream.append(dict(msg))
        self.fan_out(room, seq, msg)
        return Published(msg, duplicate=False)

    def _expire_cids(self, now: float) -> None:
        expiry = self._cid_expiry
        while expiry and expiry[0][0] <= now:
            self._cids.pop(expiry.popleft()[1], None)

    def fan_out(self, room: str, seq: int, event: Message | PresenceEvent) -> None:
        """Hand an event to this process's members of ``room`` (if any are subscribed)."""
        if self._deliver is not None and room in self._subscribed:
            ts = event["ts"] if event["type"] == "message" else 0
            self._deliver(room, seq, ts, events.encode(event))

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)
        if room in self._seq:
            self._touch(room)  # idle from now on, unless someone comes back

    async def recent(self, room: str, since: int | None, limit: int) -> RoomLog:
        last = await self._head(room)
        if room in self._seq:
            self._touch(room)
        room_log = self._logs.get(room, ())
        if since is None:
            messages = list(room_log)[-limit:] if limit else []
        else:
            messages = [m for m in room_log if m["seq"] > since]
        return RoomLog(last, messages)

    async def older(self, room: str, before: int | None, limit: int) -> list[Message]:
        room_log = self._logs.get(room, ())
        return [m for m in room_log if before is None or m["seq"] < before][-limit:]

    def heads(self) -> dict[str, int]:
        """Every room held here (with messages, or joined) → its last seq."""
        return self._seq

    async def _head(self, room: str) -> int:
        """The room's last seq; read from the store when this broker does not hold the room (it
        was pruned, or the store could not be read at start)."""
        seq = self._seq.get(room)
        if seq is not None or self._store is None:
            return seq or 0
        try:
            stored = await asyncio.to_thread(self._store.last_seq, room)
        except Exception as exc:
            raise Unavailable(f"store: {exc}") from exc
        return self._seq.setdefault(room, stored)  # a concurrent first use may have moved on

    def _touch(self, room: str) -> None:
        """``room`` was active now; rooms idle for ``idle_ttl_s`` lose their entries."""
        if self._idle_ttl_s is None:
            return
        now = self._clock()
        self._active[room] = now
        self._active.move_to_end(room)
        while self._active:
            idle, since = next(iter(self._active.items()))
            if now - since < self._idle_ttl_s:
                break
            del self._active[idle]
            if idle in self._subscribed:
                continue  # touched again when its last member leaves
            lock = self._locks.get(idle)
            if idle in self._pending or (lock is not None and lock.locked()):
                # A publish is storing its message, or a message's write has an unknown outcome
                # (its seq must not be read back from the store): not idle.
                self._active[idle] = now
                continue
            self._logs.pop(idle, None)
            self._locks.pop(idle, None)
            if self._store is not None:  # else the seq could not be read back: keep it
                self._seq.pop(idle, None)
