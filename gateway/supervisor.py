"""Background tasks that must live: restarted after any failure, with a truthful health.

A task that owns a Redis connection (the subscriber, the presence keeper) runs as a
:class:`Supervised` body: when the body raises anything at all, the supervisor logs it, waits a
capped, doubling backoff and runs it again, so no exception class can leave the gateway deaf
for good. The body reports :meth:`Supervised.up` once it works; from its failure until then the
task is down, and says since when and why: ``/readyz`` turns 503 with that reason at once, and
``/healthz`` fails once it has been down for ``CHAT_UNHEALTHY_AFTER_S``, so the orchestrator
restarts a process that cannot recover by itself.

The log says it once, not at every backoff step: a task's first failure (at start, or after it
was up) is one WARNING line with the task's name and the exception's class and message (URLs
in it with their password masked; a traceback only for what is not a Redis failure, i.e. a
bug). While it keeps failing, a failure is logged again at once only if its message is new in
this outage; otherwise at most every ``LOG_EVERY_S``, with the count of failures since (two
messages taking turns do not defeat this). The others go to DEBUG. A wrong Redis password
(which never fixes itself) is thus one line, then one a minute; the task coming back after a
logged failure is one INFO line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from shared.errors import Unavailable
from shared.redis_client import REDIS_DOWN, masked

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
LOG_EVERY_S = 60.0  # a task failing the same way is logged again at most this often
REMEMBERED_REASONS = 16  # distinct failure messages remembered per outage (the oldest go)

# Failures of Redis itself (or of a command for want of it): logged without a traceback.
_EXPECTED = (*REDIS_DOWN, Unavailable)


def describe(exc: BaseException) -> str:
    """``Class: message`` of an exception, on one line, passwords masked."""
    message = masked(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
        # What the log said of the current outage: the reasons logged at WARNING (oldest
        # first; empty: nothing yet), when last, and the failures since that went to DEBUG.
        self._logged: dict[str, None] = {}
        self._logged_at = 0.0
        self._unlogged = 0

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
        if self._logged:
            log.info("%s is up again after %.1fs", self.name, self.down_for())
            self._logged.clear()
            self._unlogged = 0
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
                self.reason = describe(exc)
                if self.healthy:
                    self._down_since = self._clock()
                    self._log(exc, "%s failed: %s; restarting", self.name, self.reason)
                    backoff = FIRST_BACKOFF_S
                elif self.reason not in self._logged:
                    self._log(exc, "%s failed: %s; retrying", self.name, self.reason)
                elif self._clock() - self._logged_at >= LOG_EVERY_S:
                    self._log(
                        exc,
                        "%s still failing after %.0fs (%d failures not logged): %s",
                        self.name,
                        self.down_for(),
                        self._unlogged,
                        self.reason,
                    )
                else:
                    self._unlogged += 1
                    log.debug("%s failed again: %s", self.name, self.reason)
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def _log(self, exc: Exception, message: str, *args: object) -> None:
        """One WARNING line for a failure; a traceback only for what Redis does not explain (a
        bug), and only if its message holds no password (a traceback shows it unmasked)."""
        text = " ".join(str(exc).split())
        traced = not isinstance(exc, _EXPECTED) and masked(text) == text
        log.warning(message, *args, exc_info=exc if traced else None)
        self._logged.pop(self.reason, None)
        self._logged[self.reason] = None
        while len(self._logged) > REMEMBERED_REASONS:
            del self._logged[next(iter(self._logged))]
        self._logged_at, self._unlogged = self._clock(), 0
