"""Joins that fail half-way through, against a real Redis: the client gets ``unavailable``, stays
connected, and leaves nothing behind (issue 13, items 7 and 8)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio

from gateway.broker_redis import RedisBroker
from shared import keys, redis_client
from shared.config import Settings
from shared.errors import Unavailable
from tests.conftest import Client, RedisServer, join, wait_until

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards


async def test_a_subscription_cut_off_while_being_confirmed_is_unavailable_not_cancelled(
    redis_server: RedisServer,
) -> None:
    settings = Settings(broker="redis", redis_url=redis_server.url)
    client = redis_client.connect(redis_server.url, pool_size=4)
    broker = RedisBroker(client, settings, store=None)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    await broker.start(lambda room, seq, ts, data: None)
    try:
        await asyncio.wait_for(broker.connected.wait(), 5)
        # Redis holds every command for a while: the SUBSCRIBE goes out, its confirmation
        # cannot come back, and meanwhile the subscriber's connection is closed.
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        subscribing = asyncio.create_task(broker.subscribe("late"))
        subscriber = broker._subscriber
        assert subscriber is not None
        await asyncio.to_thread(
            wait_until,
            lambda: keys.channel("late", SHARDS) in subscriber.link.wanted,  # type: ignore[attr-defined]
            5,
            "the SUBSCRIBE to be sent",
        )
        await subscriber.close()
        with pytest.raises(Unavailable):
            await subscribing
        assert not subscribing.cancelled()
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await broker.close()


@pytest.fixture
def start_gateways(start_gateways_on: Any, redis_server: RedisServer) -> Any:
    return functools.partial(start_gateways_on, redis_server.url)


async def test_a_join_failing_after_presence_leaves_no_ghost(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    """The member list read fails after the user was counted online: the join is undone."""
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    # A gateway account that may do everything but read a whole hash (the member list).
    admin.execute_command("ACL", "SETUSER", "gw", "on", "nopass", "~*", "&*", "+@all", "-hgetall")
    host_port = redis_server.url.removeprefix("redis://")
    [gateway] = start_gateways(1, chat_redis_url=f"redis://gw@{host_port}")
    bob = await join(gateway, "bob")
    alice = await Client.connect(f"{gateway.ws_url}?user=alice")
    await alice.expect("hello")
    await alice.send(type="join", room="ghost")
    error = await alice.expect("error", room="ghost")
    assert error["code"] == "unavailable"
    await alice.send(type="ping")
    await alice.expect("pong")  # still connected
    assert admin.hgetall(keys.presence("ghost", SHARDS)) == {}
    assert admin.zrange(keys.presence_user("ghost", "alice", SHARDS), 0, -1) == []
    await bob.close()
    admin.close()


async def test_a_gap_fill_racing_live_events_never_delivers_a_seq_twice(
    redis_server: RedisServer,
) -> None:
    # After a failover, catch-up, gap fills and live events of one room interleave: a gap fill
    # that finishes after later seqs were delivered must not move the room's head back.
    settings = Settings(broker="redis", redis_url=redis_server.url)
    client = redis_client.connect(redis_server.url, pool_size=4)
    broker = RedisBroker(client, settings, store=None)
    delivered: list[int] = []
    await broker.start(lambda room, seq, ts, data: delivered.append(seq))
    try:
        await asyncio.wait_for(broker.connected.wait(), 5)
        events = {}
        for n in range(1, 10):
            published = await broker.publish("race", "ann", f"m{n}", f"c{n}")
            events[n] = orjson.dumps(published.message).decode()
        delivered.clear()
        broker._heads["race"] = 5  # delivered up to 5; 8 arrives first, live
        real_xrange = client.xrange

        async def racing_xrange(*args: Any, **kwargs: Any) -> Any:
            for n in (6, 7, 8, 9):  # another path delivers them while the fill reads the log
                broker._on_event("race", events[n])
            return await real_xrange(*args, **kwargs)

        client.xrange = racing_xrange  # type: ignore[method-assign]
        await broker._fill_gap("race", 8, events[8])
        assert delivered == [6, 7, 8, 9]
        assert broker._heads["race"] == 9
    finally:
        await broker.close()


async def test_closing_the_broker_is_not_reported_as_a_lost_subscriber(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(broker="redis", redis_url=redis_server.url)
    client = redis_client.connect(redis_server.url, pool_size=4)
    broker = RedisBroker(client, settings, store=None)
    await broker.start(lambda room, seq, ts, data: None)
    await asyncio.wait_for(broker.connected.wait(), 5)
    with caplog.at_level("WARNING", logger="gateway.broker_redis"):
        await broker.close()
    assert "redis subscriber lost" not in caplog.text
