"""One client connection: its rooms, its bounded outbound queue and its writer task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import Identity
from gateway.limits import TokenBucket
from shared import errors, events
from shared.config import Settings
from shared.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class Connection:
    """Pending events wait in a bounded outbox; the writer sends all of them as one frame.

    Overflowing the outbox (a client that does not read) closes the connection with 4008;
    nothing else waits for a slow client.
    """

    def __init__(
        self,
        ws: WebSocket,
        identity: Identity,
        settings: Settings,
        metrics: GatewayMetrics,
        on_dirty: Callable[[Connection], None],
        on_slow: Callable[[Connection], None],
    ) -> None:
        self.ws = ws
        self.identity = identity
        self.user = identity.user
        self.rooms: dict[str, int] = {}  # joined room → last seq handed to this client
        self.bucket = TokenBucket(settings.rate_per_s, settings.rate_burst)
        self.strikes = 0  # rate_limited errors in a row
        self._joining: dict[str, list[tuple[int, str]]] = {}
        self._outbox: list[str] = []
        self._outbox_chars = 0
        self._max_events = settings.max_backlog_events
        self._max_chars = settings.max_backlog_bytes
        self._metrics = metrics
        self._on_dirty = on_dirty
        self._on_slow = on_slow
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        """True once a close has been decided."""
        return self._close is not None

    @property
    def room_count(self) -> int:
        """Rooms joined or being joined."""
        return len(self.rooms) + len(self._joining)

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"writer-{self.user}")

    async def stop(self) -> None:
        """Cancel and await the writer (the connection is gone)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def closed(self, timeout: float) -> None:
        """Wait until the writer has sent the close frame (or ``timeout``)."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)

    # -- events in ------------------------------------------------------------------------

    def begin_join(self, room: str) -> None:
        """Buffer the room's live events until :meth:`finish_join` (no gap, no reordering)."""
        self._joining.setdefault(room, [])

    def finish_join(self, room: str, last_seq: int, joined: str) -> None:
        """Send ``joined``, then the live events that arrived meanwhile and are newer."""
        buffered = self._joining.pop(room, [])
        self.rooms[room] = max(last_seq, self.rooms.get(room, 0))
        self.push(joined)
        for seq, data in buffered:
            self.deliver(room, seq, data)

    def abort_join(self, room: str) -> None:
        """Forget a join that failed."""
        self._joining.pop(room, None)

    def deliver(self, room: str, seq: int, data: str) -> None:
        """A room event from the hub; messages already handed over (by seq) are dropped."""
        buffered = self._joining.get(room)
        if buffered is not None:
            buffered.append((seq, data))
            return
        if seq:
            last = self.rooms.get(room)
            if last is None or seq <= last:
                return
            self.rooms[room] = seq
        self.push(data)

    def push(self, data: str) -> None:
        """Queue one encoded event for this client."""
        if self._close is not None:
            return
        outbox = self._outbox
        if outbox and (
            len(outbox) >= self._max_events or self._outbox_chars + len(data) > self._max_chars
        ):
            self._metrics.slow_closed.inc()
            self.close(errors.SLOW_CONSUMER, "slow consumer: outbound backlog full")
            self._on_slow(self)
            return
        outbox.append(data)
        self._outbox_chars += len(data)
        if len(outbox) == 1:
            self._on_dirty(self)

    def send_error(self, exc: errors.ProtocolError) -> None:
        """Queue an ``error`` event."""
        self._metrics.errors.labels(exc.code).inc()
        self.push(events.encode(events.error(exc.code, exc.detail, cid=exc.cid, room=exc.room)))

    # -- out ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Let the writer send what is pending."""
        self._wake.set()

    def close(self, code: int, reason: str = "") -> None:
        """Close with ``code`` after what is pending; a slow consumer's backlog is dropped."""
        if self._close is not None:
            return
        self._close = (code, reason)
        if code == errors.SLOW_CONSUMER:
            self._outbox.clear()
            self._outbox_chars = 0
        self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._outbox:
                    pending, self._outbox = self._outbox, []
                    self._outbox_chars = 0
                    await self.ws.send({"type": "websocket.send", "text": events.coalesce(pending)})
                    self._metrics.frames_out.inc()
                    self._metrics.events_out.inc(len(pending))
                    if len(pending) > 1:
                        self._metrics.coalesced.inc(len(pending))
                if self._close is not None and not self._outbox:
                    code, reason = self._close
                    await self.ws.close(code, reason)
                    return
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            # The peer went away mid-send: the reader sees the disconnect and cleans up.
            log.debug("writer for %s stopped: %r", self.user, exc)
