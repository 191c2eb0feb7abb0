"""Presence on a Redis Cluster: the keeper's periodic refresh must work there too (redis-py
refuses ``evalsha`` on a cluster pipeline; the refresh once failed for good on its first run)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from redis.crc import key_slot

from shared import keys
from shared.config import Settings
from stack.cluster import LocalRedisCluster
from stack.processes import wait_until
from tests.conftest import Client, http_get, join

SHARDS = Settings().shards


async def wait_refreshed(cluster: LocalRedisCluster, room: str, user: str) -> None:
    """Wait until the presence expiry of ``user`` in ``room`` moves on by at least a second
    (two refreshes of a 1.5 s TTL)."""
    rc = redis.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in cluster.startup_nodes],
        decode_responses=True,
    )
    key = keys.presence_user(room, user, SHARDS)

    def expiry() -> float:
        return max((score for _, score in rc.zrange(key, 0, -1, withscores=True)), default=0)

    try:
        first = await asyncio.to_thread(expiry)
        assert first > 0
        await asyncio.to_thread(
            wait_until, lambda: expiry() >= first + 1000, 10, f"{user}'s presence refreshed"
        )
    finally:
        rc.close()


async def test_presence_refresh_extends_members_and_the_gateway_stays_ready(
    cluster: LocalRedisCluster, start_gateways_on: Any
) -> None:
    # A short TTL: the keeper refreshes every half second.
    (gateway,) = start_gateways_on(cluster.url, 1, chat_presence_ttl_s=1.5)
    alice = await join(gateway, "alice", "lobby")
    await wait_refreshed(cluster, "lobby", "alice")
    status, body = http_get(gateway.url + "/readyz")
    assert status == 200, body
    bob = await Client.connect(f"{gateway.ws_url}?user=bob&room=lobby")
    joined = await bob.expect("joined", room="lobby")
    assert joined["members"] == ["alice", "bob"]
    await alice.close()
    await bob.close()


async def test_a_shard_without_a_replica_does_not_take_presence_down(
    cluster: LocalRedisCluster, start_gateways_on: Any
) -> None:
    # min-replicas-to-write: a primary whose replica is gone refuses writes. The keeper's
    # refresh of that shard's entries is refused; the keeper itself must stay up (readiness),
    # and the other shards' entries must still be refreshed.
    (gateway,) = start_gateways_on(cluster.url, 1, chat_presence_ttl_s=1.5)
    by_primary: dict[int, str] = {}
    for n in range(200):  # one room on each primary
        room = f"p{n}"
        slot = key_slot(keys.presence(room, SHARDS).encode())
        by_primary.setdefault(cluster.owner_of_slot(slot), room)
        if len(by_primary) == len(cluster.primaries()):
            break
    (cut, cut_room), (_, kept_room), *_ = by_primary.items()
    clients = [await join(gateway, f"u-{room}", room) for room in (cut_room, kept_room)]
    replica = cluster.replica_of(cut)
    assert replica is not None
    cluster.kill(replica)
    await asyncio.to_thread(
        wait_until, lambda: cluster.node(cut).good_replicas() == 0, 20, "the replica counted gone"
    )
    await wait_refreshed(cluster, kept_room, f"u-{kept_room}")
    status, body = http_get(gateway.url + "/readyz")
    assert status == 200, body
    for client in clients:
        await client.close()
