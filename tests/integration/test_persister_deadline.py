"""The persister's Redis client has no socket timeout (one asyncio timeout per reply was a
third of a pipelined command's CPU): each operation of the source has one deadline instead.
A Redis that stops answering, its connection open (SIGSTOP, as a partition), fails reads and
acknowledgements after that deadline instead of hanging the persister; once it answers again,
so does the source."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stack.processes import RedisServer

pytestmark = pytest.mark.anyio

DEADLINE_S = 0.5


async def test_a_redis_that_stops_answering_fails_each_operation_at_its_deadline(
    persist_source: Any, redis_server: RedisServer
) -> None:
    source, redis = persist_source(4, CollectorRegistry(), timeout_s=DEADLINE_S)
    await source.start()
    event = {"type": "message", "room": "r", "seq": 1, "user": "u", "text": "t", "ts": 0}
    await redis.xadd(source.streams[0], {"e": orjson.dumps(event)})
    [(entry_id, _)] = await source.read(10, 0)

    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(30):  # a hang fails the test instead of stalling the suite
            with pytest.raises(TimeoutError):
                await source.ack([entry_id])
            with pytest.raises(TimeoutError):
                await source.read(10, 0.1)  # a blocking read: its block time, plus the deadline
            with pytest.raises(TimeoutError):
                await source.backlog()
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)

    await source.ack([entry_id])  # on a new connection: the timed-out ones were dropped
    assert await source.backlog() == 0
    pending = await redis.xpending(source.streams[0], "persister")
    assert pending["pending"] == 0
