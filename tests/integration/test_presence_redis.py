"""Presence through a real Redis: a refresh never resurrects a user who left, and a user whose
presence expired while she stayed connected is announced again (issue 13, item 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from gateway.presence_redis import KEEP_CALLS_PER_PIPELINE, KEEP_USERS_PER_CALL, RedisPresence
from shared import keys, redis_client
from shared.config import Settings
from tests.conftest import RedisServer

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards


@pytest.fixture
async def presence(redis_server: RedisServer) -> AsyncIterator[RedisPresence]:
    settings = Settings(broker="redis", redis_url=redis_server.url, gateway_id="gw0")
    client = redis_client.connect(redis_server.url, pool_size=4)
    yield RedisPresence(client, settings)
    await client.aclose()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_refresh_taken_before_a_leave_and_run_after_it_brings_nobody_back(
    presence: RedisPresence, admin: redis.asyncio.Redis
) -> None:
    await presence.join("r", "alice")
    await presence.join("r", "bob")
    snapshot = [("r", "alice"), ("r", "bob")]  # what the refresh task read, before the leave
    await presence.leave("r", "alice")
    await presence.refresh(snapshot)
    assert await presence.members("r") == ["bob"]
    assert list(await admin.hgetall(keys.presence("r", SHARDS))) == ["bob"]
    assert await admin.exists(keys.presence_user("r", "alice", SHARDS)) == 0


async def test_a_user_still_here_whose_presence_expired_is_announced_again(
    presence: RedisPresence, admin: redis.asyncio.Redis
) -> None:
    await presence.join("r", "alice")
    # Redis was away for longer than the TTL: her entries are gone, she is still connected.
    await admin.delete(keys.presence_user("r", "alice", SHARDS))
    await admin.hdel(keys.presence("r", SHARDS), "alice")
    async with admin.pubsub() as pubsub:
        await pubsub.subscribe(keys.channel("r", SHARDS))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await presence.refresh([("r", "alice")])
        told = await pubsub.get_message(timeout=5)
    assert await presence.members("r") == ["alice"]
    assert told is not None and '"joined":["alice"]' in told["data"]


async def test_a_round_keeps_every_user_of_a_big_room_and_sweeps_a_crashed_gateways_once(
    redis_server: RedisServer, presence: RedisPresence, admin: redis.asyncio.Redis
) -> None:
    # More users of ours than one KEEP call takes: the room comes in several calls, and only
    # the last one sweeps (a ghost is announced gone once).
    users = [f"u{n}" for n in range(KEEP_USERS_PER_CALL * 2 + 1)]
    for user in users:
        await presence.join("big", user)
    crashed = RedisPresence(
        redis_client.connect(redis_server.url, pool_size=1),
        Settings(broker="redis", redis_url=redis_server.url, gateway_id="gw-crashed"),
    )
    await crashed.join("big", "ghost")
    await crashed.redis.aclose()
    # The crashed gateway's entry expired; ours were about to.
    await admin.zadd(keys.presence_user("big", "ghost", SHARDS), {"gw-crashed": 1})
    await admin.hset(keys.presence("big", SHARDS), "ghost", 1)
    async with admin.pubsub() as pubsub:
        await pubsub.subscribe(keys.channel("big", SHARDS))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await presence.refresh([("big", user) for user in users])
        told = await pubsub.get_message(timeout=5)
        assert await pubsub.get_message(timeout=0.5) is None
    assert told is not None and '"left":["ghost"]' in told["data"]
    assert await presence.members("big") == sorted(users)


async def test_a_round_over_many_rooms_goes_in_bounded_pipelines_and_keeps_every_room(
    presence: RedisPresence, admin: redis.asyncio.Redis
) -> None:
    # Packing and parsing one pipeline of every room's call held the event loop for tens of ms
    # (nothing written to any client meanwhile); a bounded pipeline at a time lets it run.
    rooms = [f"room{n}" for n in range(KEEP_CALLS_PER_PIPELINE * 3 + 7)]
    for room in rooms:
        await presence.join(room, "alice")
    sizes: list[int] = []
    pipeline = presence.redis.pipeline

    def recording(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **kw: Any) -> Any:
            sizes.append(len(pipe))
            return await execute(*a, **kw)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    presence.redis.pipeline = recording  # type: ignore[method-assign]
    for room in rooms:  # about to expire: only the round keeps them
        await admin.hset(keys.presence(room, SHARDS), "alice", 1)
    await presence.refresh([(room, "alice") for room in rooms])
    assert max(sizes) <= KEEP_CALLS_PER_PIPELINE
    assert sum(sizes) == len(rooms)
    for room in rooms:
        assert await presence.members(room) == ["alice"]
