"""Run a coroutine synchronously until it first has to wait (Python 3.12's eager tasks, here).

Sending a frame to a socket whose buffer has room completes without ever suspending; only a
backpressured socket makes ``send`` wait. Driving the send eagerly lets the flush pass write to
every client in one sequential loop, and turns only the rare waiting send into a task: no task
per recipient, and no client ever waits for a slow one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now; ``None`` if it finished, else a task that finishes it.

    Exceptions raised before the first suspension propagate to the caller.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.ensure_future(_finish(coro, waiting_on))
    # Cancelled before its first step, the task never resumes ``coro``: close it instead.
    task.add_done_callback(lambda t: coro.close() if t.cancelled() else None)
    return task


async def _finish(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    # The coroutine is suspended on ``waiting_on`` (what it yielded, as it would to a Task):
    # wait for that, then resume it, until it returns.
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)  # a bare yield
            else:
                # What a Task does with a yielded future: clear its "blocking" mark, then wait
                # for it (a future still marked refuses a second await).
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except asyncio.CancelledError:
            try:
                waiting_on = coro.throw(asyncio.CancelledError())
            except StopIteration:
                return
            continue
        except BaseException:
            pass
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
