"""The clients of a run, on an event loop and a thread of their own, so the main thread is free
to inject faults (and to restart processes, which must happen on it)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

from bench.chaos.client import ChaosClient, Shared
from bench.chaos.records import ClientLog, Disconnect, SendRecord

T = TypeVar("T")
REPLY_WAIT_S = 10.0  # after the traffic, a send still unanswered this long is not waited for


def rooms(count: int) -> list[str]:
    return [f"chaos-{i}" for i in range(count)]


class Traffic:
    """``users`` clients spread evenly over ``rooms`` rooms (user i in room i mod rooms)."""

    def __init__(
        self, url: str, users: int, room_count: int, rate: float, seed: int, run_id: str
    ) -> None:
        self.url = url
        self.users = users
        self.rooms = rooms(room_count)
        self.rate = rate
        self.seed = seed
        self.run_id = run_id
        self.clients: list[ChaosClient] = []
        self.shared: Shared | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finish: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop and connect every client (``joined()`` tells how many are in)."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="traffic")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the traffic loop did not start")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._finish = asyncio.Event()
        self.shared = Shared(self.url, self.run_id, self.rate)
        self.clients = [
            ChaosClient(
                f"chaos-u{i}",
                self.rooms[i % len(self.rooms)],
                self.shared,
                random.Random(f"{self.seed}/{i}"),
            )
            for i in range(self.users)
        ]
        tasks = [asyncio.create_task(c.run(), name=c.user) for c in self.clients]
        self._ready.set()
        await self._finish.wait()
        self.shared.closing = True
        await asyncio.gather(*(c.close() for c in self.clients))
        _, left = await asyncio.wait(tasks, timeout=10)
        for task in left:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run ``fn`` on the traffic's loop (a consistent view of the clients) and return."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def joined(self) -> int:
        return self.call(lambda: sum(1 for c in self.clients if c.joined))

    def begin(self, seconds: float) -> float:
        """Start sending, for ``seconds``; returns the start (``time.monotonic()``)."""

        def go() -> float:
            assert self.shared is not None
            now = time.monotonic()
            self.shared.deadline = now + seconds
            self.shared.sending.set()
            return now

        return self.call(go)

    def lagging(self) -> list[str]:
        """Clients not caught up yet: not joined, behind the room's last acknowledged seq, or
        waiting for a reply to a recent send."""

        def look() -> list[str]:
            assert self.shared is not None
            now = time.monotonic()
            head: dict[str, int] = defaultdict(int)
            for s in self.shared.sends:
                if s.seq is not None:
                    head[s.room] = max(head[s.room], s.seq)
            out = []
            for c in self.clients:
                waiting = any(now - s.sent_at < REPLY_WAIT_S for s in c.pending.values())
                if not c.joined or (c.log.high or 0) < head[c.room] or waiting:
                    out.append(c.user)
            return out

        return self.call(look)

    def stop(self) -> None:
        """Close every client and end the loop (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None and self._finish is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._finish.set)
        self._thread.join(60)
        self._thread = None

    def records(self) -> tuple[list[SendRecord], list[ClientLog], list[Disconnect], list[str]]:
        """What the clients logged, and their unexpected errors (after :meth:`stop`)."""
        assert self._thread is None and self.shared is not None
        shared = self.shared
        return shared.sends, [c.log for c in self.clients], shared.disconnects, shared.errors
