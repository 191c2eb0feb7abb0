"""Churn: short-lived clients launched at a fixed rate until a deadline, on an event loop (and a
thread) of their own while the load generator runs."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from bench.soak.client import ChurnStats, live
from bench.soak.settings import SoakSettings


class Churn:
    """Launches ``churn_per_s`` clients a second (at most ``churn_inflight`` at once)."""

    def __init__(self, url: str, rooms: list[str], s: SoakSettings) -> None:
        self.url = url
        self.rooms = rooms
        self.s = s
        self.stats = ChurnStats()
        # Unique per run, so a cid of this run never hits the idempotency window of another.
        self.run_id = f"{os.getpid():x}{int(time.time() * 1000) % 10**8:x}"
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, deadline: float) -> None:
        """Launch clients in the background until ``deadline`` (``time.monotonic``)."""
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.run(deadline)), name="churn", daemon=True
        )
        self.thread.start()

    def join(self) -> None:
        """Wait for the last clients (each lives ``churn_timeout_s`` at most)."""
        if self.thread is not None:
            self.thread.join(self.s.churn_timeout_s + 30)

    async def run(self, deadline: float) -> None:
        """Launch on schedule until the deadline or ``stop``; then wait for those in flight."""
        interval = 1.0 / self.s.churn_per_s if self.s.churn_per_s > 0 else None
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        next_at = time.monotonic()
        while interval is not None and time.monotonic() < deadline and not self.stop.is_set():
            if len(tasks) < self.s.churn_inflight:
                task = asyncio.create_task(self.client(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.stats.launched += 1
            else:
                self.stats.skipped += 1
            i += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=self.s.churn_timeout_s + 5)

    async def client(self, i: int) -> None:
        """Client ``i``, its failure (a timeout included) counted rather than raised."""
        try:
            room = self.rooms[i % len(self.rooms)]
            await asyncio.wait_for(
                live(self.url, room, i, self.run_id, self.stats), self.s.churn_timeout_s
            )
        except TimeoutError:
            self.stats.fail("timeout", f"churn {i}: no answer within {self.s.churn_timeout_s}s")
        except Exception as exc:
            self.stats.fail(type(exc).__name__, f"churn {i}: {exc!r}")
