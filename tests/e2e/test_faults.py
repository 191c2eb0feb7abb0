"""Faults through the whole stack: an nginx reload mid-conversation, a reconnect storm."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.crc import key_slot

from shared import keys
from shared.config import Settings
from stack.cluster import LocalRedisCluster
from stack.processes import http_get
from tests.conftest import Client, join, send_acked, wait_until
from tests.e2e.conftest import one_client_per_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("close_clients")]


def stored_seqs(stack: Any, room: str) -> list[int]:
    rows = stack.mariadb.query(
        "chat", "SELECT seq FROM message WHERE room_id=%s ORDER BY seq", room
    )
    return [r[0] for r in rows]


async def test_nginx_reload_keeps_conversations_going(start_stack: Any) -> None:
    stack = start_stack(gateways=2)
    alice = await join(stack, "alice", "reload")
    bob = await join(stack, "bob", "reload")
    for n in range(5):
        await alice.send(type="send", room="reload", text=f"before {n}")
    await bob.messages("reload", 5)
    stack.nginx.reload()
    for n in range(5):
        await alice.send(type="send", room="reload", text=f"during {n}")
        await bob.send(type="send", room="reload", text=f"reply {n}")
    texts = [m["text"] for m in await alice.messages("reload", 15)]
    assert texts[:5] == [f"before {n}" for n in range(5)] and len(texts) == 15
    # A connection opened after the reload goes through the new configuration.
    carol = await join(stack, "carol", "reload")
    await carol.send(type="send", room="reload", text="new here")
    assert (await bob.expect("message", room="reload", text="new here"))["seq"] == 16
    await asyncio.to_thread(wait_until, lambda: len(stored_seqs(stack, "reload")) == 16, 30)
    assert stored_seqs(stack, "reload") == list(range(1, 17))


async def test_reconnect_storm_recovers_everyone_exactly(start_stack: Any) -> None:
    stack = start_stack(gateways=3)
    count = 200
    clients = await asyncio.gather(*(join(stack, f"s{n}", "storm") for n in range(count)))
    writer = await join(stack, "writer", "storm")
    for n in range(20):
        await writer.send(type="send", room="storm", text=f"seen {n}")
    for client in clients:
        assert [m["seq"] for m in await client.messages("storm", 20)][-1] == 20
    for client in clients:
        client.ws.transport.abort()  # all drop at once, without a goodbye
    for n in range(30):
        await writer.send(type="send", room="storm", text=f"missed {n}")
    await writer.messages("storm", 50)

    async def come_back(n: int) -> list[int]:
        client = await Client.connect(f"{stack.ws_url}?user=s{n}")
        await client.send(type="join", room="storm", since=20)
        joined = await client.expect("joined", room="storm", timeout=30)
        assert joined["recovered"] is True
        return [m["seq"] for m in joined["messages"]]

    recovered = await asyncio.gather(*(come_back(n) for n in range(count)))
    assert all(seqs == list(range(21, 51)) for seqs in recovered)
    await asyncio.to_thread(wait_until, lambda: len(stored_seqs(stack, "storm")) == 50, 30)
    assert stored_seqs(stack, "storm") == list(range(1, 51))


async def test_cluster_primary_failover_through_nginx_stores_every_acknowledged_message_once(
    start_stack: Any,
) -> None:
    stack = start_stack(redis="cluster")
    cluster = stack.redis
    assert isinstance(cluster, LocalRedisCluster)
    victim = cluster.primaries()[0]
    replica = cluster.replica_of(victim)
    owned = next(n.slots for n in cluster.topology() if n.port == victim)
    shards = Settings().shards  # the gateways' default

    def on_victim(room: str) -> bool:
        slot = key_slot(keys.seq(room, shards).encode())
        return any(lo <= slot <= hi for lo, hi in owned)

    room = next(r for r in (f"failover{n}" for n in range(10_000)) if on_victim(r))
    writer, *readers = await one_client_per_gateway(stack, room)
    total, kill_after = 40, 10
    acked: list[dict[str, Any]] = []
    killed = asyncio.Event()

    async def write() -> None:
        for n in range(total):
            acked.append(await send_acked(writer, room, f"m{n}", cid=f"c{n}"))
            if n + 1 == kill_after:
                killed.set()
                await asyncio.to_thread(cluster.kill, victim)

    writing = asyncio.create_task(write())
    await killed.wait()
    await asyncio.to_thread(
        wait_until, lambda: replica in cluster.primaries(), 20, "the replica's promotion"
    )
    # Acknowledged means replicated: the shard accepts again once the old primary is back as
    # the new one's replica.
    await asyncio.to_thread(cluster.restart, victim)
    await asyncio.wait_for(writing, 60)

    assert [m["seq"] for m in acked] == list(range(1, total + 1))
    for reader in readers:  # on the other gateways, through nginx
        seen = await reader.messages(room, total, timeout=30)
        assert [(m["seq"], m["text"]) for m in seen] == [(m["seq"], m["text"]) for m in acked]

    def stored() -> list[tuple[Any, ...]]:
        return stack.mariadb.query(
            "chat", f"SELECT seq, content FROM message WHERE room_id='{room}' ORDER BY seq"
        )

    await asyncio.to_thread(wait_until, lambda: len(stored()) >= total, 30, "rows")
    assert [tuple(r) for r in stored()] == [(m["seq"], m["text"]) for m in acked]


def readiness(gateway: Any) -> tuple[int, str]:
    status, body = http_get(gateway.url + "/readyz", timeout=5)
    return status, body.decode()


async def test_whole_cluster_killed_and_restarted_under_traffic_no_gateway_stays_deaf(
    start_stack: Any,
) -> None:
    """Every node SIGKILLed, then restarted while a client keeps sending: each gateway's
    subscriber survives the cluster client's own exceptions (not ``RedisError``s), says why it is
    not ready meanwhile, resumes, and replays by seq; every acknowledged message reaches every
    gateway's reader in order and is stored once."""
    stack = start_stack(redis="cluster", gateways=2)
    cluster = stack.redis
    assert isinstance(cluster, LocalRedisCluster)
    room = "blackout"
    writer, *readers = await one_client_per_gateway(stack, room)
    acked = [await send_acked(writer, room, f"before {n}", cid=f"b{n}") for n in range(10)]

    ports = [node.port for node in cluster.nodes]
    for port in ports:
        await asyncio.to_thread(cluster.kill, port)
    for gateway in stack.gateways:
        await asyncio.to_thread(
            wait_until,
            lambda g=gateway: readiness(g)[0] == 503 and "redis-subscriber" in readiness(g)[1],
            30,
            "readiness to say the subscriber is down",
        )
    await writer.send(type="send", room=room, text="refused", cid="refused")
    error = await writer.expect("error", cid="refused", timeout=30)
    assert error["code"] == "unavailable"

    async def write(first: int, count: int) -> None:
        for n in range(first, first + count):
            acked.append(await send_acked(writer, room, f"after {n}", cid=f"a{n}"))

    writing = asyncio.create_task(write(0, 10))  # retries with the same cid until accepted
    for port in ports:
        await asyncio.to_thread(cluster.restart, port)
    await asyncio.wait_for(writing, 90)
    await write(10, 10)

    assert [m["seq"] for m in acked] == list(range(1, len(acked) + 1))
    expected = [(m["seq"], m["text"]) for m in acked]
    for reader in readers:  # on the other gateway(s), through nginx
        seen = await reader.messages(room, len(acked), timeout=30)
        assert [(m["seq"], m["text"]) for m in seen] == expected
    for gateway in stack.gateways:
        assert readiness(gateway)[0] == 200

    def stored() -> list[tuple[Any, ...]]:
        return stack.mariadb.query(
            "chat", "SELECT seq, content FROM message WHERE room_id=%s ORDER BY seq", room
        )

    await asyncio.to_thread(wait_until, lambda: len(stored()) >= len(acked), 30, "rows")
    assert [tuple(r) for r in stored()] == expected
