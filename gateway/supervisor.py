"""Background tasks that must live: restarted after any failure, with a truthful health.

A task that owns a Redis connection (the subscriber, the presence keeper) runs as a
:class:`Supervised` body: when the body raises anything at all, the supervisor logs it, waits a
capped, doubling backoff and runs it again, so no exception class can leave the gateway deaf
for good. The body reports :meth:`Supervised.up` once it works; from its failure until then the
task is down, and says since when and why: ``/readyz`` turns 503 with that reason at once, and
``/healthz`` fails once it has been down for ``CHAT_UNHEALTHY_AFTER_S``, so the orchestrator
restarts a process that cannot recover by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0


class Supervised:
    """One owned task running ``body`` again and again while it fails."""

    def __init__(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        *,
        max_backoff_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._body = body
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = clock()
        self.reason = "starting"
        self.restarts = 0

    def start(self) -> None:
        """Run the body in a task of its own."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def up(self) -> None:
        """The body works (called by the body)."""
        self._down_since = None
        self.reason = ""

    @property
    def healthy(self) -> bool:
        """Whether the body reported :meth:`up` since its last failure."""
        return self._down_since is None

    def down_for(self) -> float:
        """Seconds since the task went down (0 while it is up)."""
        return 0.0 if self._down_since is None else self._clock() - self._down_since

    def status(self) -> str:
        """``ok``, or how long it has been down and why."""
        if self.healthy:
            return "ok"
        return f"{self.name} down for {self.down_for():.1f}s: {self.reason}"

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                await self._body()
                raise RuntimeError("returned")  # a body runs until it fails or is cancelled
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.healthy:
                    log.warning("%s failed: %r; restarting", self.name, exc)
                    self._down_since = self._clock()
                    backoff = FIRST_BACKOFF_S
                else:
                    log.debug("%s failed again: %r", self.name, exc)
                self.reason = f"{type(exc).__name__}: {exc}"
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
