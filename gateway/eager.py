"""Run a coroutine synchronously until it first has to wait.

Sending a frame to a socket whose buffer has room completes without ever suspending; only a
backpressured socket makes ``send`` wait. Driving the send eagerly lets the flush pass write to
every client in one sequential loop, and turns only the rare waiting send into a task: no task
per recipient, and no client ever waits for a slow one.

Python 3.12+ has this built in (``asyncio.Task(..., eager_start=True)``), and
:func:`start_eagerly` uses it there. :func:`start_eagerly_fallback` rebuilds it for Python 3.11
from the way a Task drives a coroutine; delete it (and this module's version switch) once 3.12
is the floor (``requires-python`` in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any


def start_eagerly_fallback(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now; ``None`` if it finished, else a task that finishes it (Python 3.11).

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


if sys.version_info >= (3, 12):

    def start_eagerly_stdlib(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coro`` now; ``None`` if it finished, else a task that finishes it (3.12+).

        Exceptions raised before the first suspension propagate to the caller.
        """
        # The eager step runs inside the constructor (the loop is running: we are in it).
        task = asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
        if not task.done():
            return task
        # Finished in the eager step. Its outcome is stored in the task rather than raised:
        # re-raise it here (an exception, or CancelledError), which also marks it retrieved.
        task.result()
        return None

    start_eagerly = start_eagerly_stdlib
else:
    start_eagerly = start_eagerly_fallback
