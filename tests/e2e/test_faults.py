"""Faults through the whole stack: an nginx reload mid-conversation, a reconnect storm."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Client, join, wait_until

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
