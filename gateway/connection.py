"""One client connection: its rooms, its bounded outbox, how its output is written, and its
lifecycle as one explicit state (as starlette's ``WebSocketState``, centrifuge's client status).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import Identity
from gateway.batch import Batch, frame_of
from gateway.eager import start_eagerly
from gateway.hub import Stats
from gateway.limits import TokenBucket
from shared import errors, events
from shared.config import Settings
from shared.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# What a write that found the peer gone raises.
PEER_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class State(enum.Enum):
    """Where a connection is in its life. Transitions: :data:`TRANSITIONS`."""

    OPEN = "open"  # events flow both ways
    CLOSING = "closing"  # a close is decided: pending output goes first (a slow consumer's not)
    CLOSE_SENT = "close_sent"  # the close frame is being written; nothing more is queued
    CLOSED = "closed"  # the close frame went out
    GONE = "gone"  # the peer is gone or the connection stopped: nothing more is written


TRANSITIONS: dict[State, frozenset[State]] = {
    State.OPEN: frozenset({State.CLOSING, State.GONE}),
    State.CLOSING: frozenset({State.CLOSE_SENT, State.GONE}),
    State.CLOSE_SENT: frozenset({State.CLOSED, State.GONE}),
    State.CLOSED: frozenset({State.GONE}),
    State.GONE: frozenset(),
}


class HubLink(Protocol):
    """What a connection needs from its hub (``gateway/hub.py``)."""

    stats: Stats

    def distribute(self) -> None:
        """Hand pending room batches to their members' outboxes."""

    def mark_dirty(self, conn: Connection) -> None:
        """Write ``conn``'s pending output at the next flush."""


class Connection:
    """Pending batches wait in a bounded outbox; :meth:`flush` sends them as ONE frame.

    A write to a socket with room completes at once; a backpressured socket turns its write into
    a task, and batches for it wait in the outbox meanwhile. Overflowing the outbox (a client
    that does not read) closes the connection with 4008; nobody else ever waits for it.
    """

    def __init__(
        self,
        ws: WebSocket,
        identity: Identity,
        settings: Settings,
        metrics: GatewayMetrics,
        hub: HubLink,
        on_slow: Callable[[Connection], None],
    ) -> None:
        self.ws = ws
        self.identity = identity
        self.user = identity.user
        self.rooms: dict[str, int] = {}  # joined room → last seq handed to this client
        self.bucket = TokenBucket(settings.rate_per_s, settings.rate_burst)
        self.joins = TokenBucket(settings.join_rate_per_s, settings.join_rate_burst)
        self.strikes = 0  # rate_limited errors in a row
        self._joining: dict[str, list[Batch]] = {}
        self._outbox: list[Batch] = []
        self._outbox_events = 0
        self._outbox_chars = 0
        self._max_events = settings.max_backlog_events
        self._max_chars = settings.max_backlog_bytes
        self._metrics = metrics
        self._hub = hub
        self._stats = hub.stats
        self._on_dirty = hub.mark_dirty
        self._on_slow = on_slow
        self._writing: asyncio.Task[None] | None = None  # a write waiting for the socket
        self.state = State.OPEN
        self._close: tuple[int, str] | None = None  # the code and reason, once decided
        self._done = asyncio.Event()  # set on CLOSED or GONE: nothing more will be written

    def _enter(self, state: State) -> None:
        """The one place the state changes."""
        if state is self.state:
            return
        if state not in TRANSITIONS[self.state]:
            raise AssertionError(f"connection of {self.user}: {self.state} → {state}")
        self.state = state
        if state in (State.CLOSED, State.GONE):
            self._done.set()

    @property
    def closing(self) -> bool:
        """True once the server decided to close (commands then go unanswered). A peer that is
        merely gone still has the commands it sent before leaving carried out."""
        return self._close is not None

    @property
    def _accepting(self) -> bool:
        # Until the close frame is out, events still go (they were published before it);
        # a slow consumer gets nothing more.
        if self.state is State.CLOSING:
            return self._close is not None and self._close[0] != errors.SLOW_CONSUMER
        return self.state is State.OPEN

    @property
    def room_count(self) -> int:
        """Rooms joined or being joined."""
        return len(self.rooms) + len(self._joining)

    async def stop(self) -> None:
        """The connection is over: stop any write still waiting."""
        self._enter(State.GONE)
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)

    async def closed(self, timeout: float) -> None:
        """Wait until the close frame is sent (or ``timeout``)."""
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            log.info("%s did not take its close frame within %.1fs", self.user, timeout)

    # -- events in ------------------------------------------------------------------------

    def begin_join(self, room: str) -> None:
        """Hold the room's live batches until :meth:`finish_join` (no gap, no reordering)."""
        self._joining.setdefault(room, [])

    def finish_join(self, room: str, last_seq: int, joined: str) -> None:
        """Send ``joined``, then the live events that arrived meanwhile and are newer."""
        self._hub.distribute()  # room events still pending join the held ones, after `joined`
        held = self._joining.pop(room, [])
        self.rooms[room] = max(last_seq, self.rooms.get(room, 0))
        self._enqueue(Batch.of(joined))
        for batch in held:
            self.deliver(batch)

    def abort_join(self, room: str) -> None:
        """Forget a join that failed."""
        self._joining.pop(room, None)

    def deliver(self, batch: Batch) -> None:
        """A room's batch from the hub; messages already handed over (by seq) are dropped."""
        room = batch.room
        assert room is not None
        held = self._joining.get(room)
        if held is not None:
            held.append(batch)
            return
        last = self.rooms.get(room)
        if last is None:
            return
        if batch.first > last or not batch.last:
            if batch.last:
                self.rooms[room] = batch.last
            self._enqueue(batch)
            return
        # Partly seen (a join or a recovery overlapping live traffic): keep what is new.
        kept = batch.newer_than(last)
        if kept.last:
            self.rooms[room] = kept.last
        if kept.events:
            self._enqueue(kept)

    def push(self, data: str) -> None:
        """Queue one encoded event of this client's own (a reply), after the room events
        published before it."""
        self._hub.distribute()
        self._enqueue(Batch.of(data))

    def _enqueue(self, batch: Batch) -> None:
        if not self._accepting:
            return
        if self._outbox and (
            self._outbox_events + len(batch.events) > self._max_events
            or self._outbox_chars + batch.chars > self._max_chars
        ):
            self._metrics.slow_closed.inc()
            self.close(errors.SLOW_CONSUMER, "slow consumer: outbound backlog full")
            self._on_slow(self)
            return
        self._outbox.append(batch)
        self._outbox_events += len(batch.events)
        self._outbox_chars += batch.chars
        if len(self._outbox) == 1 and self._writing is None:
            self._on_dirty(self)

    def send_error(self, exc: errors.ProtocolError) -> None:
        """Queue an ``error`` event."""
        self._metrics.errors.labels(exc.code).inc()
        self.push(events.encode(events.error(exc.code, exc.detail, cid=exc.cid, room=exc.room)))

    # -- out ------------------------------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        """Close with ``code`` after what is pending; a slow consumer's backlog is dropped."""
        if self.state is not State.OPEN:
            return
        self._close = (code, reason)
        self._enter(State.CLOSING)
        if code == errors.SLOW_CONSUMER:
            self._outbox.clear()
            self._outbox_events = self._outbox_chars = 0
        if self._writing is None:
            self._on_dirty(self)

    def flush(self) -> None:
        """Write what is pending as one frame (then the close frame, if one is due)."""
        if self._writing is not None or self.state in (State.CLOSED, State.GONE):
            return
        if self._outbox:
            batches, self._outbox = self._outbox, []
            count = self._outbox_events
            self._outbox_events = self._outbox_chars = 0
            stats = self._stats
            stats.frames += 1
            stats.events += count
            if count > 1:
                stats.coalesced += count
            self._write({"type": "websocket.send", "text": frame_of(batches)})
        elif self.state is State.CLOSING and self._close is not None:
            code, reason = self._close
            self._enter(State.CLOSE_SENT)
            self._write({"type": "websocket.close", "code": code, "reason": reason})

    def _write(self, message: dict[str, Any]) -> None:
        try:
            self._writing = start_eagerly(self.ws.send(message))
        except PEER_GONE as exc:
            self._peer_gone(exc)
            return
        if self._writing is not None:
            self._writing.add_done_callback(self._written)
        else:
            self._after_write()

    def _written(self, task: asyncio.Task[None]) -> None:
        if task is not self._writing:
            return
        self._writing = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._peer_gone(exc)
            return
        self._after_write()

    def _after_write(self) -> None:
        if self.state is State.CLOSE_SENT:
            self._enter(State.CLOSED)
        elif self._outbox or self.state is State.CLOSING:
            self._on_dirty(self)  # more to write: at the next flush

    def _peer_gone(self, exc: BaseException) -> None:
        # The reader sees the disconnect and cleans up; nothing more to write.
        log.debug("write to %s failed: %r", self.user, exc)
        self._enter(State.GONE)
        self._outbox.clear()
