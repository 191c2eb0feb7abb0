"""A supervised task survives any exception and tells the truth about its health."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import AuthenticationError, RedisClusterException

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


async def test_a_failing_task_is_logged_once_then_rarely(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.supervisor")
    refused = "invalid username-password pair or user is disabled."
    leaky = "Error 111 connecting to redis://gateway:s3cret@127.0.0.1:6379/0. Connection refused."
    # (clock, what the run does): raise, or report up and then raise.
    steps: list[tuple[float, Exception | None]] = [
        (0.0, AuthenticationError(refused)),  # the first failure: WARNING
        *((float(t), AuthenticationError(refused)) for t in range(1, 31)),  # the same: DEBUG
        (40.0, ConnectionError(leaky)),  # a new message: WARNING, password masked
        (41.0, AuthenticationError(refused)),  # messages taking turns: DEBUG
        (42.0, ConnectionError(leaky)),
        (100.0, AuthenticationError(refused)),  # 60 s after the last line: WARNING, counted
        (101.0, AuthenticationError(refused)),
        (110.0, None),  # up: one INFO line
        (120.0, KeyError("bug")),  # up, then a bug: WARNING with its traceback
    ]
    now = [0.0]
    done = asyncio.Event()

    async def body() -> None:
        if not steps:
            done.set()
            await asyncio.Event().wait()
        now[0], failure = steps.pop(0)
        if failure is None:
            sup.up()
            now[0], failure = steps.pop(0)
        assert failure is not None
        raise failure

    sup = Supervised("flaky", body, max_backoff_s=0.001, clock=lambda: now[0])
    sup.start()
    await asyncio.wait_for(done.wait(), 10)
    await sup.stop()

    records = [r for r in caplog.records if r.name == "gateway.supervisor"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"flaky failed: AuthenticationError: {refused}; retrying",
        "flaky failed: ConnectionError: Error 111 connecting to "
        "redis://gateway:***@127.0.0.1:6379/0. Connection refused.; retrying",
        f"flaky still failing after 100s (2 failures not logged): AuthenticationError: {refused}",
        "flaky failed: KeyError: 'bug'; restarting",
    ]
    assert [r.exc_info is None for r in warnings] == [True, True, True, False]
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert infos == ["flaky is up again after 110.0s"]
    assert sum(r.levelno == logging.DEBUG for r in records) == 30 + 2 + 1
    assert "s3cret" not in caplog.text
    assert sup.reason == "KeyError: 'bug'"


async def test_a_password_in_a_failure_is_masked_in_the_status_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = asyncio.Event()

    async def body() -> None:
        if sup.restarts:
            failed.set()
            await asyncio.Event().wait()
        raise ValueError("bad redis+cluster://gate%40way:p%3As/s@10.0.0.1:7000,10.0.0.2:7000\nx")

    sup = Supervised("masked", body)
    sup.start()
    await asyncio.wait_for(failed.wait(), 5)
    masked = "redis+cluster://gate%40way:***@10.0.0.1:7000,10.0.0.2:7000"
    assert sup.reason == f"ValueError: bad {masked} x"  # on one line
    assert sup.status().endswith(f"ValueError: bad {masked} x")
    # Not a Redis failure, but no traceback either: it would show the message unmasked.
    (record,) = [r for r in caplog.records if r.name == "gateway.supervisor"]
    assert record.getMessage() == f"masked failed: ValueError: bad {masked} x; retrying"
    assert record.exc_info is None and "p%3As" not in caplog.text
    await sup.stop()
