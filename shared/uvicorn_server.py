"""uvicorn's server, woken by its stop signal instead of looking for it ten times a second.

uvicorn's main loop sleeps 0.1 s between checks of ``should_exit``: ten wake-ups a second in
every process, about 0.17 % of a core each on an idle box (more than the rest of an idle
persister). Here the loop waits for the signal handler to wake it, and otherwise wakes once a
second (uvicorn's Date header changes once a second; other code setting ``should_exit``
is seen within that second).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_S = 1.0
_TICKS_PER_S = 10  # uvicorn refreshes its Date header when the tick counter is a multiple


class Server(uvicorn.Server):
    """:class:`uvicorn.Server` with an event-driven main loop (same shutdown behaviour)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's signal handler, then wake the main loop (from the signal handler: the
        thread-safe call writes to the loop's wake-up pipe)."""
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def main_loop(self) -> None:
        """Until ``on_tick`` says to exit: wait for a signal, or a second."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + _TICKS_PER_S) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
