"""The shared uvicorn server waits for its stop signal instead of polling for it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
import uvicorn

from shared import uvicorn_server
from stack.processes import free_port


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serves nothing: the test is about the main loop."""


def test_the_main_loop_wakes_on_the_signal_not_on_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a 30 s tick, only the signal's wake-up can end the server quickly.
    monkeypatch.setattr(uvicorn_server, "TICK_S", 30.0)
    config = uvicorn.Config(app, port=free_port(), lifespan="off", log_level="warning")
    server = uvicorn_server.Server(config)
    ticks: list[int] = []
    on_tick = server.on_tick

    async def counting(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    monkeypatch.setattr(server, "on_tick", counting)
    stopped_at: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The signal half a second after start-up: uvicorn's own loop would tick 5 times.
        loop.call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
        await server.serve()
        stopped_at.append(time.monotonic())

    # uvicorn re-raises the captured signal once stopped, with the handler it found: a no-op.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        started = time.monotonic()
        asyncio.run(main())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ticks[:2] == [0, 10]  # the first look, then the one the signal woke
    assert len(ticks) == 2, ticks
    assert stopped_at[0] - started < 10, "the server waited for its timer, not the signal"
