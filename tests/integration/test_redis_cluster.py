"""A real local Redis Cluster (3 primaries, 3 replicas on loopback ports): the key scheme keeps a
room in one slot, the 16 shards reach every primary, the publish script and sharded pub/sub work
through redis-py's cluster client, and a SIGKILL'd primary's replica takes over (issue 8), taking
writes once it has a replica again (``min-replicas-to-write``, issue 13)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest
import redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared import keys, scripts
from stack.cluster import SLOTS, LocalRedisCluster
from stack.processes import wait_until
from tests.conftest import http_get, join, send_acked

pytestmark = pytest.mark.anyio

SHARDS = 48
FAILOVER_BOUND = 12.0  # s: node timeout 2 s + failure agreement + election (measured ~4 s)


@pytest.fixture
async def client(cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    rc = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        decode_responses=True,
    )
    await rc.initialize()
    try:
        yield rc
    finally:
        await rc.aclose()


def room_keys(room: str) -> list[str]:
    shard = keys.shard_of(room, SHARDS)
    return [
        keys.seq(room, SHARDS),
        keys.log(room, SHARDS),
        keys.persist(shard, SHARDS),
        keys.channel(room, SHARDS),
        keys.presence(room, SHARDS),
        keys.presence_user(room, "ann", SHARDS),
        keys.cid(room, "ann", "c1", SHARDS),
        keys.lock(room, SHARDS),
    ]


def shard_owners(cluster: LocalRedisCluster, client: RedisCluster) -> dict[int, int]:
    """Logical shard -> port of the primary that owns its slot."""
    owners = {}
    for shard in range(SHARDS):
        key = keys.persist(shard, SHARDS)
        owners[shard] = cluster.owner_of_slot(client.keyslot(key))
        node = client.get_node_from_key(key)
        assert node is not None and node.port == owners[shard]  # the client agrees
    return owners


def rooms_per_primary(cluster: LocalRedisCluster, client: RedisCluster) -> dict[int, str]:
    """One room whose shard lives on each primary."""
    owners = shard_owners(cluster, client)
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(cluster.primaries()):
        room = f"room{n}"
        found.setdefault(owners[keys.shard_of(room, SHARDS)], room)
        n += 1
    return found


async def verify(client: RedisCluster, room: str) -> None:
    """What a gateway does before a room's first publish on a Redis process (gateway/seqs.py)."""
    script = client.register_script(scripts.VERIFY)
    await script(keys=[keys.seq(room, SHARDS), keys.verified(room, SHARDS)], args=[0])


async def publish(client: RedisCluster, room: str, text: str, cid: str = "") -> list[Any]:
    shard = keys.shard_of(room, SHARDS)
    script = client.register_script(scripts.PUBLISH)
    body = orjson.dumps({"type": "message", "room": room, "user": "ann", "text": text})[:-1]
    cid_key = keys.cid(room, "ann", cid or "none", SHARDS)
    room_keys = [keys.seq(room, SHARDS), keys.log(room, SHARDS), keys.persist(shard, SHARDS)]
    room_keys += [cid_key, keys.verified(room, SHARDS), keys.room_rooms(room, SHARDS)]
    args = [body, keys.channel(room, SHARDS), 100, "60" if cid else "", "1", room]
    result = await script(keys=room_keys, args=args)
    if result[0] == scripts.PublishReply.UNVERIFIED:
        await verify(client, room)
        result = await script(keys=room_keys, args=args)
    return list(result)


async def publish_acked(client: RedisCluster, room: str, text: str) -> tuple[list[Any], int]:
    """The publish script then ``WAIT 1 1000`` pipelined on ONE connection to the slot's primary
    (WAIT counts the replicas that have this connection's writes; the cluster client would
    send a keyless WAIT to every primary on arbitrary connections, which proves nothing)."""
    shard = keys.shard_of(room, SHARDS)
    node = client.get_node_from_key(keys.seq(room, SHARDS))
    assert node is not None
    body = orjson.dumps({"type": "message", "room": room, "user": "ann", "text": text})[:-1]
    eval_args = [
        "EVAL", scripts.PUBLISH, 6,
        keys.seq(room, SHARDS), keys.log(room, SHARDS), keys.persist(shard, SHARDS),
        keys.cid(room, "ann", "none", SHARDS), keys.verified(room, SHARDS),
        keys.room_rooms(room, SHARDS),
        body, keys.channel(room, SHARDS), 100, "", "1", room,
    ]  # fmt: skip
    await verify(client, room)
    conn = node.acquire_connection()
    try:
        await conn.send_packed_command(conn.pack_commands([eval_args, ["WAIT", 1, 1000]]))
        result = await conn.read_response()
        replicas = await conn.read_response()
    finally:
        node.release(conn)
    return list(result), int(replicas)


async def next_message(pubsub: Any, timeout: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                return dict(message)


async def test_cluster_is_up_room_keys_share_a_slot_and_shards_reach_every_primary(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    primaries = cluster.primaries()
    assert len(primaries) == 3 and len(cluster.startup_nodes) == 6
    replicas = [cluster.replica_of(p) for p in primaries]
    assert None not in replicas and len(set(replicas)) == 3
    assert set(primaries) | set(replicas) == {port for _, port in cluster.startup_nodes}
    topology = cluster.topology()
    covered = sorted(r for n in topology if n.is_primary for r in n.slots)
    assert sum(hi - lo + 1 for lo, hi in covered) == SLOTS
    assert covered[0][0] == 0 and covered[-1][1] == SLOTS - 1
    for _, port in cluster.startup_nodes:
        info = cluster.cluster_info(port)
        assert info["cluster_state"] == "ok" and info["cluster_slots_ok"] == str(SLOTS)
    assert cluster.url.startswith("redis+cluster://127.0.0.1:")

    for room in [f"room{n}" for n in range(40)] + ["é-ü", "a{b}c", "x" * 200]:
        slots = {await client.cluster_keyslot(key) for key in room_keys(room)}  # server side
        assert slots == {client.keyslot(keys.seq(room, SHARDS))}
    owners = shard_owners(cluster, client)
    per_primary = Counter(owners.values())
    print("shards per primary:", dict(per_primary))  # e.g. {p1: 6, p2: 5, p3: 5}
    assert set(per_primary) == set(cluster.primaries())
    assert min(per_primary.values()) >= 1
    assert sum(per_primary.values()) == SHARDS


async def test_publish_script_and_sharded_pubsub_on_every_primary(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    rooms = rooms_per_primary(cluster, client)
    pubsub = client.pubsub()
    try:
        for room in rooms.values():
            await client.set(keys.seq(room, SHARDS), 0)
            await pubsub.ssubscribe(keys.channel(room, SHARDS))
        for room in rooms.values():
            status, event = await publish(client, room, "hello", cid="c1")
            assert status == 0
            message = await next_message(pubsub)
            assert message["type"] == "smessage"
            assert message["channel"] == keys.channel(room, SHARDS)
            assert orjson.loads(message["data"]) == orjson.loads(event)
            assert orjson.loads(event)["seq"] == 1
            assert (await publish(client, room, "hello", cid="c1")) == [1, event]  # known cid
            shard = keys.shard_of(room, SHARDS)
            assert await client.xlen(keys.persist(shard, SHARDS)) == 1
            assert await client.xlen(keys.log(room, SHARDS)) == 1
    finally:
        await pubsub.aclose()


async def test_primary_sigkill_promotes_its_replica_and_publishing_resumes(
    cluster: LocalRedisCluster, client: RedisCluster
) -> None:
    rooms = rooms_per_primary(cluster, client)
    victim = cluster.primaries()[0]
    replica = cluster.replica_of(victim)
    room = rooms[victim]
    await client.set(keys.seq(room, SHARDS), 0)
    # Acknowledged only once the replica has it: the script and WAIT on one connection.
    (status, _), acked_by = await publish_acked(client, room, "before")
    assert status == 0 and acked_by == 1

    cluster.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    # Nothing else runs on this loop meanwhile: a blocking poll is fine here.
    wait_until(
        lambda: replica in cluster.primaries() and len(cluster.primaries()) == 3,
        FAILOVER_BOUND,
        "the replica's promotion",
    )
    print(f"replica promoted {time.monotonic() - started:.1f} s after SIGKILL")
    wait_until(
        lambda: cluster.cluster_info(replica)["cluster_state"] == "ok",
        FAILOVER_BOUND,
        "cluster_state:ok on the promoted node",
    )

    # The promoted node has no replica (its old primary is dead): min-replicas-to-write makes
    # it refuse every write, so nothing it stores could be lost by the next failure.
    promoted = cluster.node(replica)
    assert promoted.good_replicas() == 0
    with promoted.client() as conn, pytest.raises(redis.ResponseError, match=r"^NOREPLICAS"):
        conn.set(keys.seq(room, SHARDS), 99)
    # The old primary comes back as its replica; then the shard takes writes again.
    cluster.restart(victim)
    wait_until(cluster.healthy, FAILOVER_BOUND, "the old primary back as a replica in sync")
    assert cluster.replica_of(replica) == victim

    # The client learns the new owner (MOVED / connection error -> slots refresh) and the
    # script keeps working for that shard; the seq continues from the replicated value.
    with anyio.fail_after(FAILOVER_BOUND):
        while True:
            try:
                status, event = await publish(client, room, "after")
                break
            except Exception:  # the client may still hold the dead node for a moment
                await anyio.sleep(0.1)
    assert status == 0 and orjson.loads(event)["seq"] == 2
    node = client.get_node_from_key(keys.seq(room, SHARDS))
    assert node is not None and node.port == replica

    # A fresh sharded subscription on the promoted node receives the shard's events.
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(keys.channel(room, SHARDS))
        assert (await publish(client, room, "again"))[0] == 0
        message = await next_message(pubsub)
        assert orjson.loads(message["data"])["seq"] == 3
    finally:
        await pubsub.aclose()


# -- gateways on the cluster ------------------------------------------------------------------

LIMITS = {  # senders retry through a failover: keep the abuse limits out of the way
    "chat_rate_per_s": 1000,
    "chat_rate_burst": 1000,
    "chat_user_rate_per_s": 1000,
    "chat_user_rate_burst": 1000,
    "chat_join_rate_per_s": 1000,
    "chat_join_rate_burst": 1000,
    "chat_user_join_rate_per_s": 1000,
    "chat_user_join_rate_burst": 1000,
}


async def test_gateways_deliver_and_log_rooms_on_every_primary(
    cluster: LocalRedisCluster, client: RedisCluster, start_gateways_on: Any
) -> None:
    rooms = rooms_per_primary(cluster, client)
    gateways = start_gateways_on(cluster.url, 3)
    users = [await join(gw, f"user{i}", *rooms.values()) for i, gw in enumerate(gateways)]
    for i, user in enumerate(users):
        for room in rooms.values():
            await send_acked(user, room, f"{i} in {room}", cid=f"{i}-{room}")
    for user in users:
        every = [await user.expect("message") for _ in range(3 * len(rooms))]
        for room in rooms.values():
            got = [m for m in every if m["room"] == room]
            assert [m["seq"] for m in got] == [1, 2, 3]
            # 100 % crossed: every gateway's message reached every gateway, in one order.
            assert sorted(m["text"] for m in got) == [f"{i} in {room}" for i in range(3)]
    for port, room in rooms.items():
        node = client.get_node_from_key(keys.room_persist(room, SHARDS))
        assert node is not None and node.port == port  # the room's keys live on that primary
        assert await client.xlen(keys.log(room, SHARDS)) == 3
        # 3 messages and 3 joins wait in the shard's persist stream for the persister.
        assert await client.xlen(keys.room_persist(room, SHARDS)) >= 6


async def test_primary_failover_under_traffic_loses_nothing_acknowledged(
    cluster: LocalRedisCluster, client: RedisCluster, start_gateways_on: Any
) -> None:
    rooms = rooms_per_primary(cluster, client)
    victim = cluster.primaries()[0]
    replica = cluster.replica_of(victim)
    room = rooms[victim]
    writer_gw, reader_gw = start_gateways_on(cluster.url, 2, **LIMITS)
    writer = await join(writer_gw, "writer", room)
    reader = await join(reader_gw, "reader", room)
    total, kill_after = 60, 15
    acked: list[dict[str, Any]] = []
    killed = asyncio.Event()

    async def write() -> None:
        for n in range(total):
            acked.append(await send_acked(writer, room, f"m{n}", cid=f"c{n}"))
            if n + 1 == kill_after:
                killed.set()
                await anyio.to_thread.run_sync(cluster.kill, victim)

    writing = asyncio.create_task(write())
    await killed.wait()
    await anyio.to_thread.run_sync(
        lambda: wait_until(
            lambda: replica in cluster.primaries(), FAILOVER_BOUND, "the replica's promotion"
        )
    )
    # The promoted primary has no replica, so nothing is acknowledged until the old primary
    # is back (as its replica): acknowledged means replicated.
    await anyio.to_thread.run_sync(cluster.restart, victim)
    await anyio.to_thread.run_sync(
        lambda: wait_until(
            lambda: cluster.replica_of(replica) == victim, FAILOVER_BOUND, "the rejoin"
        )
    )
    with anyio.fail_after(60):
        await writing

    assert [m["seq"] for m in acked] == list(range(1, total + 1))
    assert [m["text"] for m in acked] == [f"m{n}" for n in range(total)]
    # The reader saw every acknowledged message once, in order, with no gap, across the
    # failover (its gateway resubscribed on the promoted node and replayed the log).
    seen = await reader.messages(room, total, timeout=30)
    assert [(m["seq"], m["text"]) for m in seen] == [(m["seq"], m["text"]) for m in acked]
    # And the room's log on the promoted node holds each exactly once.
    logged = [orjson.loads(f["e"]) for _, f in await client.xrange(keys.log(room, SHARDS))]
    assert [(e["seq"], e["cid"]) for e in logged] == [(m["seq"], m["cid"]) for m in acked]


async def test_slot_migration_moves_a_room_under_traffic_without_a_gap(
    cluster: LocalRedisCluster, client: RedisCluster, start_gateways_on: Any
) -> None:
    rooms = rooms_per_primary(cluster, client)
    source, room = next(iter(rooms.items()))
    target = next(port for port in rooms if port != source)
    slot = client.keyslot(keys.seq(room, SHARDS))
    writer_gw, reader_gw = start_gateways_on(cluster.url, 2, **LIMITS)
    writer = await join(writer_gw, "writer", room)
    reader = await join(reader_gw, "reader", room)
    total = 60
    acked: list[dict[str, Any]] = []
    halfway = asyncio.Event()

    async def write() -> None:
        for n in range(total):
            acked.append(await send_acked(writer, room, f"m{n}", cid=f"c{n}"))
            if n == total // 3:
                halfway.set()

    writing = asyncio.create_task(write())
    await halfway.wait()
    # The room's slot (seq, log, persist stream, channel) moves while the writer keeps going.
    await anyio.to_thread.run_sync(cluster.migrate_slot, slot, target)
    assert cluster.owner_of_slot(slot) == target
    with anyio.fail_after(60):
        await writing

    assert [m["seq"] for m in acked] == list(range(1, total + 1))
    # The reader's gateway lost its shard subscription with the slot, resubscribed on the new
    # owner and replayed the log: every message once, in order.
    seen = await reader.messages(room, total, timeout=30)
    assert [(m["seq"], m["text"]) for m in seen] == [(m["seq"], m["text"]) for m in acked]
    await client.get(keys.seq(room, SHARDS))  # the test's client learns the move
    node = client.get_node_from_key(keys.seq(room, SHARDS))
    assert node is not None and node.port == target
    assert await client.xlen(keys.log(room, SHARDS)) == total


async def test_leave_and_rejoin_on_the_cluster_resubscribe_without_a_reconnect(
    cluster: LocalRedisCluster, client: RedisCluster, start_gateways_on: Any
) -> None:
    (gateway,) = start_gateways_on(cluster.url, 1, **LIMITS)
    room = next(iter(rooms_per_primary(cluster, client).values()))
    user = await join(gateway, "flicker", room)
    for n in range(20):
        # The room's last local member leaves (SUNSUBSCRIBE) and is straight back (SSUBSCRIBE).
        await user.send(type="leave", room=room)
        await user.send(type="join", room=room)
        await user.expect("joined", room=room)
        await send_acked(user, room, f"still here {n}", cid=f"f{n}")
    _, metrics = http_get(gateway.url + "/metrics")
    # Our own unsubscribe confirmations are never taken for Redis dropping the channel (which
    # would reconnect and replay everything).
    assert b"chat_broker_reconnects_total 0.0" in metrics
