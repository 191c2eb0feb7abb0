"""The eager runner: synchronous completion, hand-off to a task, errors, cancellation.

Every test runs against both implementations: the standard library's eager start (Python 3.12+,
skipped below that) and the 3.11 fallback (everywhere, called directly).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway import eager

pytestmark = pytest.mark.anyio

StartEagerly = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None] | None"]

STDLIB = getattr(eager, "start_eagerly_stdlib", None)


@pytest.fixture(
    params=[
        pytest.param(eager.start_eagerly_fallback, id="fallback"),
        pytest.param(
            STDLIB,
            id="stdlib",
            marks=pytest.mark.skipif(STDLIB is None, reason="eager_start needs Python 3.12+"),
        ),
    ]
)
def start_eagerly(request: pytest.FixtureRequest) -> StartEagerly:
    start: StartEagerly = request.param
    return start


def test_the_stdlib_is_used_where_it_has_eager_start() -> None:
    expected = STDLIB if sys.version_info >= (3, 12) else eager.start_eagerly_fallback
    assert expected is not None and eager.start_eagerly is expected


async def test_finishes_synchronously_when_nothing_waits(start_eagerly: StartEagerly) -> None:
    done: list[int] = []

    async def quick() -> None:
        done.append(1)

    assert start_eagerly(quick()) is None
    assert done == [1]


async def test_hands_a_waiting_coroutine_to_a_task(start_eagerly: StartEagerly) -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def blocked() -> None:
        steps.append("start")
        await gate.wait()
        steps.append("after gate")
        await asyncio.sleep(0)
        steps.append("end")

    task = start_eagerly(blocked())
    assert task is not None and steps == ["start"]
    gate.set()
    await task
    assert steps == ["start", "after gate", "end"]


async def test_errors_before_waiting_propagate_and_after_waiting_land_in_the_task(
    start_eagerly: StartEagerly,
) -> None:
    async def fails_now() -> None:
        raise ValueError("now")

    with pytest.raises(ValueError, match="now"):
        start_eagerly(fails_now())

    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await future

    task = start_eagerly(fails_later())
    assert task is not None
    future.set_exception(OSError("later"))
    with pytest.raises(OSError, match="later"):
        await task


async def test_an_error_raised_to_the_caller_is_not_reported_again(
    start_eagerly: StartEagerly,
) -> None:
    # The stdlib keeps it in a finished task: once re-raised, that task must not also log
    # "Task exception was never retrieved" when it is collected.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def fails_now() -> None:
            raise ValueError("now")

        with pytest.raises(ValueError, match="now"):
            start_eagerly(fails_now())
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_cancellation_before_waiting_propagates(start_eagerly: StartEagerly) -> None:
    async def cancelled_now() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        start_eagerly(cancelled_now())


async def test_cancelling_the_task_cancels_the_coroutine(start_eagerly: StartEagerly) -> None:
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("finally")

    task = start_eagerly(waits_forever())
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_on_real_event_loops(start_eagerly: StartEagerly, loop: str) -> None:
    import uvloop

    async def main() -> list[str]:
        gate = asyncio.Event()
        steps: list[str] = []

        async def send() -> None:
            steps.append("started")
            await gate.wait()
            steps.append("sent")

        task = start_eagerly(send())
        assert task is not None and steps == ["started"]
        await asyncio.sleep(0.001)
        gate.set()
        await task
        return steps

    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(main()) == ["started", "sent"]
