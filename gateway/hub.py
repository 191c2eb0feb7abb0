"""The hub: which local connections are in which room, and the coalescing flush clock."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from shared import events
from shared.metrics import GatewayMetrics

if TYPE_CHECKING:
    from gateway.connection import Connection


class Hub:
    """Room → local connections. Fans one encoded event out to every local member.

    Connections with pending output are collected and woken together every ``coalesce_s``, so
    events that arrive within one window leave in one frame per client.
    """

    def __init__(self, coalesce_s: float, metrics: GatewayMetrics) -> None:
        self.rooms: dict[str, dict[Connection, None]] = {}  # dict: ordered, O(1) removal
        self.connections: set[Connection] = set()
        self._coalesce_s = coalesce_s
        self._metrics = metrics
        self._dirty: list[Connection] = []
        self._has_dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the flush clock."""
        if self._coalesce_s > 0:
            self._flusher = asyncio.create_task(self._flush_loop(), name="hub-flusher")

    async def stop(self) -> None:
        """Stop the flush clock and wake every writer one last time."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self._wake_dirty()

    def add(self, room: str, conn: Connection) -> bool:
        """Add a member; True if it is the room's first local member."""
        members = self.rooms.get(room)
        first = members is None
        if members is None:
            members = self.rooms[room] = {}
            self._metrics.rooms.set(len(self.rooms))
        members[conn] = None
        return first

    def remove(self, room: str, conn: Connection) -> bool:
        """Remove a member; True if the room has no local member left."""
        members = self.rooms.get(room)
        if members is None:
            return False
        members.pop(conn, None)
        if members:
            return False
        del self.rooms[room]
        self._metrics.rooms.set(len(self.rooms))
        return True

    def deliver(self, room: str, seq: int, ts: int, data: str) -> None:
        """Hand one encoded room event to every local member (the broker's callback)."""
        members = self.rooms.get(room)
        if not members:
            return
        if ts:
            self._metrics.deliver_latency.observe(max(0, events.now_ms() - ts) / 1000)
        for conn in members:
            conn.deliver(room, seq, data)

    def mark_dirty(self, conn: Connection) -> None:
        """A connection has pending output: wake its writer at the next flush."""
        if self._flusher is None:
            conn.wake()
            return
        self._dirty.append(conn)
        self._has_dirty.set()

    def _wake_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.wake()

    async def _flush_loop(self) -> None:
        while True:
            await self._has_dirty.wait()
            # Let the window fill: everything that arrives now leaves in the same frame.
            await asyncio.sleep(self._coalesce_s)
            self._has_dirty.clear()
            self._wake_dirty()
