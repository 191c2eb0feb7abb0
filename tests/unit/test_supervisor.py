"""A supervised task survives any exception and tells the truth about its health."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import RedisClusterException

from gateway.supervisor import Supervised

pytestmark = pytest.mark.anyio


async def test_restarts_after_any_exception_and_reports_down_then_up() -> None:
    runs = 0
    seen: list[str] = []  # the status each run found when it started
    working, release, fourth = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        seen.append(sup.status())
        if runs == 1:
            raise RedisClusterException("no node answers")  # not a RedisError
        if runs == 2:
            raise KeyError("anything")
        if runs == 3:
            sup.up()
            working.set()
            await release.wait()
            raise ConnectionError("lost again")
        fourth.set()
        await asyncio.Event().wait()

    sup = Supervised("test", body, max_backoff_s=0.01)
    sup.start()
    await asyncio.wait_for(working.wait(), 5)
    assert sup.healthy and sup.status() == "ok" and sup.down_for() == 0.0
    assert "starting" in seen[0]
    assert "RedisClusterException: no node answers" in seen[1]
    assert "KeyError: 'anything'" in seen[2]
    release.set()
    await asyncio.wait_for(fourth.wait(), 5)
    assert not sup.healthy and "ConnectionError: lost again" in sup.status()
    assert sup.restarts == 3
    await sup.stop()


async def test_down_time_is_measured_from_the_failure() -> None:
    now = [100.0]
    working, fail, restarted = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def body() -> None:
        if sup.restarts:
            restarted.set()
            await asyncio.Event().wait()
        sup.up()
        working.set()
        await fail.wait()
        raise OSError("gone")

    sup = Supervised("clocked", body, max_backoff_s=0.01, clock=lambda: now[0])
    sup.start()
    await asyncio.wait_for(working.wait(), 5)
    now[0] = 110.0
    fail.set()
    await asyncio.wait_for(restarted.wait(), 5)
    now[0] = 175.0
    assert sup.down_for() == 65.0
    assert sup.status() == "clocked down for 65.0s: OSError: gone"
    await sup.stop()


async def test_stop_cancels_and_awaits() -> None:
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.Event().wait()

    sup = Supervised("idle", body)
    sup.start()
    await started.wait()
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "idle")
    await sup.stop()
    assert task.done()
