"""The eager runner: synchronous completion, hand-off to a task, errors, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from gateway.eager import start_eagerly

pytestmark = pytest.mark.anyio


async def test_finishes_synchronously_when_nothing_waits() -> None:
    done: list[int] = []

    async def quick() -> None:
        done.append(1)

    assert start_eagerly(quick()) is None
    assert done == [1]


async def test_hands_a_waiting_coroutine_to_a_task() -> None:
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


async def test_errors_before_waiting_propagate_and_after_waiting_land_in_the_task() -> None:
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


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
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
def test_on_real_event_loops(loop: str) -> None:
    import uvloop

    async def main() -> list[str]:
        gate = asyncio.Event()
        steps: list[str] = []

        async def send() -> None:
            await gate.wait()
            steps.append("sent")

        task = start_eagerly(send())
        assert task is not None
        await asyncio.sleep(0.001)
        gate.set()
        await task
        return steps

    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(main()) == ["sent"]
