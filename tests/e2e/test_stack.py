"""The whole topology through a real nginx: redis, mariadb, persister, N gateways
(`stack.Stack`, the machinery of `make stack`)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.conftest import Client, http_get, wait_until
from tests.e2e.conftest import one_client_per_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("close_clients")]


async def exchange(clients: list[Client], room: str, seconds: float) -> list[list[dict[str, Any]]]:
    """Everyone sends for a bounded time; returns what each received (messages only)."""
    stop = asyncio.get_running_loop().time() + seconds
    sent = [0] * len(clients)

    async def talk(i: int) -> None:
        while asyncio.get_running_loop().time() < stop:
            await clients[i].send(
                type="send", room=room, text=f"{i}:{sent[i]}", cid=f"{i}:{sent[i]}"
            )
            sent[i] += 1
            await asyncio.sleep(0.02)

    await asyncio.gather(*(talk(i) for i in range(len(clients))))
    received: list[list[dict[str, Any]]] = [[] for _ in clients]
    for i, client in enumerate(clients):
        # Each client finishes when its own last message has come back to it.
        while True:
            message = await client.expect("message", room=room)
            received[i].append(message)
            own = message["user"] == client.hello["user"]
            if own and message.get("cid") == f"{i}:{sent[i] - 1}":
                break
    return received


def crossed(received: list[list[dict[str, Any]]], users: list[str]) -> float:
    """Share of (recipient, other sender) pairs where the recipient got that sender's messages."""
    total = hits = 0
    for i, got in enumerate(received):
        others = {u for j, u in enumerate(users) if j != i}
        senders = {m["user"] for m in got}
        total += len(others)
        hits += len(others & senders)
    return hits / total


@pytest.mark.parametrize(
    ("broker", "redis", "expected"),
    [("redis", "single", 1.0), ("redis", "cluster", 1.0), ("memory", "single", 0.0)],
)
async def test_cross_gateway_delivery_experiment(
    start_stack: Any, broker: str, redis: str, expected: float
) -> None:
    stack = start_stack(broker=broker, redis=redis)
    clients = await one_client_per_gateway(stack, "xgw")
    users = [c.hello["user"] for c in clients]
    received = await exchange(clients, "xgw", 2.0)
    assert crossed(received, users) == expected
    if broker == "redis":
        # Everyone saw the same gapless sequence.
        for got in received:
            assert [m["seq"] for m in got] == list(range(1, len(got) + 1))


@pytest.mark.parametrize("redis", ["single", "cluster"])
async def test_every_message_through_nginx_is_stored_once(start_stack: Any, redis: str) -> None:
    stack = start_stack(redis=redis)
    clients = await one_client_per_gateway(stack, "store")
    received = await exchange(clients, "store", 1.5)
    total = max(m["seq"] for got in received for m in got)
    database = "chat"

    def stored() -> list[tuple[Any, ...]]:
        return stack.mariadb.query(
            database, "SELECT seq FROM message WHERE room_id='store' ORDER BY seq"
        )

    await asyncio.to_thread(wait_until, lambda: len(stored()) >= total, 30, "rows")
    assert [r[0] for r in stored()] == list(range(1, total + 1))


async def test_killed_gateway_clients_recover_through_nginx(start_stack: Any) -> None:
    stack = start_stack()
    clients = await one_client_per_gateway(stack, "survive")
    victim_index = 0
    victim = next(c for c in clients if c.hello["gateway"] == "gateway-0")
    witness = next(c for c in clients if c is not victim)
    for n in range(5):
        await witness.send(type="send", room="survive", text=f"before {n}")
    last = (await victim.messages("survive", 5))[-1]["seq"]
    stack.kill_gateway(victim_index, signal.SIGKILL)  # no close frame: the socket just dies
    for n in range(5):
        await witness.send(type="send", room="survive", text=f"while away {n}")
    await witness.messages("survive", 10)
    # The client reconnects through nginx (it routes around the dead gateway) and recovers.
    again = await Client.connect(f"{stack.ws_url}?user=victim")
    hello = await again.expect("hello")
    assert hello["gateway"] != "gateway-0"
    await again.send(type="join", room="survive", since=last)
    joined = await again.expect("joined", room="survive")
    assert joined["recovered"] is True
    assert [m["text"] for m in joined["messages"]] == [f"while away {n}" for n in range(5)]


async def test_sigterm_gateway_closes_its_clients_1001(start_stack: Any) -> None:
    stack = start_stack(gateways=2)
    clients = await one_client_per_gateway(stack, "bye")
    gateway_ids = [g.env["CHAT_GATEWAY_ID"] for g in stack.gateways]
    index = 0
    owner = next(c for c in clients if c.hello["gateway"] == gateway_ids[index])
    stopping = asyncio.create_task(asyncio.to_thread(stack.kill_gateway, index, signal.SIGTERM))
    assert await owner.closed() == 1001
    await stopping
    # New connections go to the gateway that is left.
    status, _ = http_get(stack.url + "/readyz")
    assert status == 200


@pytest.mark.parametrize("gateways", [1, 5])
async def test_scaling(start_stack: Any, gateways: int) -> None:
    stack = start_stack(gateways=gateways)
    clients = await one_client_per_gateway(stack, "scale")
    assert len(clients) == gateways
    await clients[0].send(type="send", room="scale", text="hello all")
    for client in clients:
        assert (await client.expect("message", room="scale"))["text"] == "hello all"
