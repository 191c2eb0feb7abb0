"""gateway/pipeline.py against a real Redis: order, one connection, error replies, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from gateway.pipeline import CommandPipe
from shared.redis_client import connect
from stack.processes import RedisServer, wait_until


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = connect(redis_server.url, pool_size=4)
    assert isinstance(redis, Redis)
    yield redis
    await redis.aclose()


@pytest.fixture
async def pipe(client: Redis) -> AsyncIterator[CommandPipe]:
    pipe = CommandPipe(client)
    yield pipe
    await pipe.close()  # idempotent: some tests close it themselves


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's own, beside the pipe."""
    admin = Redis.from_url(redis_server.url, decode_responses=True)
    yield admin
    await admin.aclose()


def blocked_in_redis(server: RedisServer) -> None:
    """Wait until Redis holds one client blocked (the pipe's BLPOP is in flight)."""
    sync = SyncRedis.from_url(server.url)
    try:
        wait_until(lambda: int(sync.info("clients")["blocked_clients"]) == 1, 10, "the BLPOP")
    finally:
        sync.close()


async def pipe_clients(admin: Redis) -> int:
    """Connections Redis sees besides the admin's own."""
    listing = await admin.client_list()
    return len(listing) - 1


async def test_one_tick_of_calls_goes_out_on_one_connection_in_order(
    pipe: CommandPipe, admin: Redis
) -> None:
    replies = await asyncio.gather(*(pipe.call("INCR", "n") for _ in range(500)))
    assert replies == list(range(1, 501))  # each caller got its own reply, in issue order
    assert await pipe_clients(admin) == 1


async def test_an_error_reply_fails_only_its_own_command(pipe: CommandPipe) -> None:
    replies: list[object] = await asyncio.gather(
        pipe.call("SET", "k", "v"),
        pipe.call("EVALSHA", "0" * 40, 0),
        pipe.call("GET", "k"),
        return_exceptions=True,
    )
    ok, missing, after = replies
    assert ok is True or ok == "OK"
    assert isinstance(missing, NoScriptError)
    assert after == "v"


async def test_a_cancelled_caller_does_not_shift_the_replies(
    pipe: CommandPipe, admin: Redis, redis_server: RedisServer
) -> None:
    blocked = asyncio.create_task(pipe.call("BLPOP", "queue", 0))
    behind = asyncio.create_task(pipe.call("ECHO", "mine"))  # answered after the BLPOP
    await asyncio.to_thread(blocked_in_redis, redis_server)
    blocked.cancel()
    await admin.lpush("queue", "x")
    assert await behind == "mine"
    assert await pipe.call("PING") in (True, "PONG")


async def test_a_killed_connection_fails_what_is_in_flight_and_the_next_call_reconnects(
    pipe: CommandPipe, admin: Redis, redis_server: RedisServer
) -> None:
    in_flight = asyncio.create_task(pipe.call("BLPOP", "never", 0))
    await asyncio.to_thread(blocked_in_redis, redis_server)
    await admin.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(RedisError):
        await in_flight
    assert await pipe.call("INCR", "after") == 1
    assert await pipe_clients(admin) == 1


async def test_close_fails_what_waits_and_refuses_new_calls(
    pipe: CommandPipe, redis_server: RedisServer
) -> None:
    in_flight = asyncio.create_task(pipe.call("BLPOP", "never", 0))
    await asyncio.to_thread(blocked_in_redis, redis_server)
    await pipe.close()
    with pytest.raises(RedisError):
        await in_flight
    with pytest.raises(RedisConnectionError):
        await pipe.call("PING")


async def test_a_reply_later_than_the_socket_timeout_fails_what_is_in_flight(
    redis_server: RedisServer,
) -> None:
    client = connect(redis_server.url, pool_size=1, socket_timeout=0.5)
    assert isinstance(client, Redis)
    pipe = CommandPipe(client)
    try:
        with pytest.raises(RedisError):
            await pipe.call("BLPOP", "never", 0)  # no reply: Redis blocks it for ever
        assert await pipe.call("INCR", "after") == 1  # on a new connection
    finally:
        await pipe.close()
        await client.aclose()
