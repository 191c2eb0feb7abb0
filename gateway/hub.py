"""The hub: which local connections are in which room, and the flush that writes to them.

Room events are collected per room during a short window; then one pass hands each room's batch
(one shared frame) to its members and writes every connection with pending output, sequentially,
never waiting for a backpressured one.

The window adapts to load: it is ``FLUSH_SHARE`` times as long as the last flush took, between
``CHAT_COALESCE_MS`` and ``CHAT_COALESCE_MAX_MS``. Writing is per frame (a syscall per
connection, and as much again in nginx and the client), so when the machine is busy every flush
takes longer, the next window grows, frames carry more messages and the cost per message falls:
the gateway spends at most about 1 / FLUSH_SHARE of its time writing. When quiet, flushes are
short and the window is the minimum; an event after a quiet spell leaves at once.

A longer window only pays when frames merge events. Where they carry one event each (many small
rooms below saturation: a member gets a message every second or so) it would write the same
frames, only later; so a flush whose frames averaged under ``MERGE_MIN`` events keeps the
window at the minimum, however long it took. A gateway that falls behind merges again (events
pile up while it writes) and the window grows as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.batch import Batch
from shared import events
from shared.metrics import GatewayMetrics

if TYPE_CHECKING:
    from gateway.connection import Connection


FLUSH_SHARE = 4.0  # window = this many times the last flush's duration (within the bounds)
MERGE_MIN = 1.1  # events per frame below which a longer window saves under a tenth of the frames


def adapt_window(flush_s: float, frames: int, events: int, low_s: float, high_s: float) -> float:
    """The next flush window after a flush that took ``flush_s`` to write ``events`` events in
    ``frames`` frames: ``FLUSH_SHARE`` times its duration within ``[low_s, high_s]`` (``low_s``
    wins if the bounds cross), or ``low_s`` if the frames averaged under ``MERGE_MIN`` events."""
    if events < MERGE_MIN * frames:
        return low_s
    return max(low_s, min(FLUSH_SHARE * flush_s, high_s))


class Stats:
    """Plain counters bumped on the hot path, copied to Prometheus once per flush."""

    __slots__ = ("coalesced", "events", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.events = 0
        self.coalesced = 0


class Hub:
    """Room → local connections, the per-room batches of the current window, and the flush."""

    def __init__(
        self,
        coalesce_s: float,
        metrics: GatewayMetrics,
        coalesce_max_s: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.rooms: dict[str, dict[Connection, None]] = {}  # dict: ordered, O(1) removal
        self._connections: set[Connection] = set()
        self.stats = Stats()
        self._coalesce_s = coalesce_s
        self._coalesce_max_s = coalesce_max_s or coalesce_s
        self.window_s = coalesce_s  # the current window
        self._metrics = metrics
        self._batches: dict[str, Batch] = {}
        self._ready: list[Connection] = []  # connections with pending output
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._clock = clock  # times a flush (a parameter for the tests)

    async def stop(self) -> None:
        """Flush what is pending now."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush()

    # -- registration (as centrifuge's Hub.add / Hub.remove) ---------------------------------

    def attach(self, conn: Connection) -> None:
        """A new local connection."""
        self._connections.add(conn)
        self._metrics.connections.set(len(self._connections))

    def detach(self, conn: Connection) -> None:
        """A local connection is over (it has left its rooms)."""
        self._connections.discard(conn)
        self._metrics.connections.set(len(self._connections))

    def connections(self) -> list[Connection]:
        """Every local connection, now."""
        return list(self._connections)

    @property
    def connection_count(self) -> int:
        """How many local connections there are."""
        return len(self._connections)

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
        self._batches.pop(room, None)
        self._metrics.rooms.set(len(self.rooms))
        return True

    def deliver(self, room: str, seq: int, ts: int, data: str) -> None:
        """One encoded room event (the broker's callback): it joins the room's batch."""
        if room not in self.rooms:
            return
        if ts:
            self._metrics.deliver_latency.observe(max(0, events.now_ms() - ts) / 1000)
        batch = self._batches.get(room)
        if batch is None:
            batch = self._batches[room] = Batch(room)
            self._schedule()
        batch.add(seq, data)

    def mark_dirty(self, conn: Connection) -> None:
        """A connection has pending output of its own (a reply): write it at the next flush."""
        self._ready.append(conn)
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        # At most one flush per window: when the last one is older, flush at the end of this
        # loop iteration (low latency when quiet); otherwise when the window is over (under
        # load, every frame then carries everything of its window).
        delay = self._last_flush + self.window_s - loop.time()
        if delay > 0:
            self._timer = loop.call_later(delay, self.flush)
        else:
            loop.call_soon(self.flush)

    def distribute(self) -> None:
        """Hand the pending room batches to their members' outboxes (without writing).

        Called before a reply is queued, so a client gets its replies and the room events
        in the order they happened (its echo before the error about its next send).
        """
        if not self._batches:
            return
        batches, self._batches = self._batches, {}
        for room, batch in batches.items():
            for conn in self.rooms.get(room, ()):
                conn.deliver(batch)

    def flush(self) -> None:
        """Hand out the room batches, then write every connection that has output."""
        self._timer = None
        self._last_flush = asyncio.get_running_loop().time()
        started = self._clock()
        self.distribute()
        ready, self._ready = self._ready, []
        for conn in ready:
            conn.flush()
        stats = self.stats
        frames, written = stats.frames, stats.events
        if frames:
            self._metrics.frames_out.inc(frames)
            self._metrics.events_out.inc(written)
            self._metrics.coalesced.inc(stats.coalesced)
            stats.frames = stats.events = stats.coalesced = 0
        took = self._clock() - started
        self.window_s = adapt_window(took, frames, written, self._coalesce_s, self._coalesce_max_s)
        self._metrics.coalesce_window.set(self.window_s)
        self._scheduled = False
        if self._ready or self._batches:
            self._schedule()
