"""Two users chat through a real embedded server: delivery, order, recovery, idempotency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import ChatServer, Client, join

pytestmark = pytest.mark.anyio


async def test_two_users_chat(server: ChatServer) -> None:
    alice = await join(server, "alice", "lobby")
    bob = await join(server, "bob", "lobby")
    await alice.send(type="send", room="lobby", text="hello bob", cid="c-1")
    echo = await alice.expect("message", room="lobby")
    got = await bob.expect("message", room="lobby")
    assert echo["seq"] == got["seq"] == 1
    assert echo["cid"] == "c-1" and echo["user"] == "alice" and got["text"] == "hello bob"
    assert isinstance(got["ts"], int)
    await bob.send(type="send", room="lobby", text="hi alice")
    assert (await alice.expect("message", room="lobby"))["seq"] == 2


async def test_concurrent_senders_get_one_gapless_order(server: ChatServer) -> None:
    clients = [await join(server, f"user{i}", "race") for i in range(5)]
    per_client = 30

    async def blast(client: Client, i: int) -> None:
        for n in range(per_client):
            await client.send(type="send", room="race", text=f"{i}:{n}")

    await asyncio.gather(*(blast(c, i) for i, c in enumerate(clients)))
    total = per_client * len(clients)
    seen = [await c.messages("race", total) for c in clients]
    for messages in seen:
        assert [m["seq"] for m in messages] == list(range(1, total + 1))
        assert [m["text"] for m in messages] == [m["text"] for m in seen[0]]
    # Each sender's own messages keep their sending order.
    for i in range(len(clients)):
        mine = [m["text"] for m in seen[0] if m["user"] == f"user{i}"]
        assert mine == [f"{i}:{n}" for n in range(per_client)]


async def test_recovery_returns_exactly_the_missed_messages(server: ChatServer) -> None:
    alice = await join(server, "alice", "r1")
    bob = await join(server, "bob", "r1")
    for n in range(3):
        await alice.send(type="send", room="r1", text=f"before {n}")
    last_seen = (await bob.messages("r1", 3))[-1]["seq"]
    await bob.close()
    for n in range(7):
        await alice.send(type="send", room="r1", text=f"missed {n}")
    await alice.messages("r1", 10)

    bob = await join(server, "bob")
    await bob.send(type="join", room="r1", since=last_seen)
    joined = await bob.expect("joined", room="r1")
    assert joined["recovered"] is True
    assert joined["seq"] == 10
    assert [m["seq"] for m in joined["messages"]] == list(range(4, 11))
    assert [m["text"] for m in joined["messages"]] == [f"missed {n}" for n in range(7)]
    # Live traffic continues right after the recovered part, without duplicates.
    await alice.send(type="send", room="r1", text="live")
    assert (await bob.expect("message", room="r1"))["seq"] == 11


async def test_rejoin_with_since_while_joined_replays_the_gap(server: ChatServer) -> None:
    alice = await join(server, "alice", "gap")
    for n in range(5):
        await alice.send(type="send", room="gap", text=str(n))
    await alice.messages("gap", 5)
    await alice.send(type="join", room="gap", since=2)
    joined = await alice.expect("joined", room="gap")
    assert [m["seq"] for m in joined["messages"]] == [3, 4, 5] and joined["recovered"]


async def test_join_without_since_shows_recent_messages(server: ChatServer) -> None:
    alice = await join(server, "alice", "recent")
    for n in range(3):
        await alice.send(type="send", room="recent", text=str(n))
    await alice.messages("recent", 3)
    bob = await join(server, "bob")
    await bob.send(type="join", room="recent")
    joined = await bob.expect("joined", room="recent")
    assert [m["text"] for m in joined["messages"]] == ["0", "1", "2"]
    assert joined["recovered"] is False and joined["seq"] == 3


async def test_cid_resend_creates_no_duplicate(server: ChatServer) -> None:
    alice = await join(server, "alice", "idem")
    bob = await join(server, "bob", "idem")
    await alice.send(type="send", room="idem", text="once", cid="same")
    first = await alice.expect("message", room="idem")
    await alice.send(type="send", room="idem", text="once", cid="same")
    again = await alice.expect("message", room="idem")
    assert again["seq"] == first["seq"] == 1 and again["cid"] == "same"
    await alice.send(type="send", room="idem", text="next", cid="other")
    # Bob saw seq 1 once, then seq 2: the resend reached nobody else.
    assert [m["seq"] for m in await bob.messages("idem", 2)] == [1, 2]


async def test_cid_is_per_user(server: ChatServer) -> None:
    alice = await join(server, "alice", "cids")
    bob = await join(server, "bob", "cids")
    await alice.send(type="send", room="cids", text="a", cid="x")
    await bob.send(type="send", room="cids", text="b", cid="x")
    assert [m["text"] for m in await alice.messages("cids", 2)] == ["a", "b"]


async def test_presence_and_members(server: ChatServer) -> None:
    alice = await join(server, "alice", "p")
    bob = await Client.connect(f"{server.ws_url}?user=bob&room=p")
    joined = await bob.expect("joined", room="p")
    assert joined["members"] == ["alice", "bob"]
    await alice.expect("presence", room="p", joined=["bob"], left=[])
    await bob.send(type="leave", room="p")
    await bob.expect("left", room="p")
    await alice.expect("presence", room="p", joined=[], left=["bob"])
    # A second connection of the same user does not announce them twice.
    a2 = await join(server, "alice", "p")
    await a2.send(type="ping")
    await a2.expect("pong")
    await bob.send(type="join", room="p")
    # The next presence alice sees is bob's: her second connection announced nothing.
    event = await alice.expect("presence", room="p")
    assert event["joined"] == ["bob"]


async def test_auto_join_rooms_from_query(server: ChatServer) -> None:
    client = await Client.connect(f"{server.ws_url}?user=carol&room=a&room=b")
    rooms: list[Any] = []
    for _ in range(2):
        rooms.append((await client.expect("joined"))["room"])
    assert sorted(rooms) == ["a", "b"]


async def test_guest_name_assigned(server: ChatServer) -> None:
    client = await Client.connect(server.ws_url)
    hello = await client.expect("hello")
    assert hello["user"].startswith("guest-") and hello["auth"] == "anonymous"
    assert hello["limits"]["max_text_chars"] == 4000
    assert set(hello["limits"]) == {
        "max_frame_bytes",
        "max_text_chars",
        "max_rooms",
        "rate_per_s",
        "rate_burst",
        "max_backlog_events",
        "max_backlog_bytes",
    }


async def test_history_pages_back(server: ChatServer) -> None:
    alice = await join(server, "alice", "h")
    for n in range(1, 26):
        await alice.send(type="send", room="h", text=f"m{n}")
    await alice.messages("h", 25)
    await alice.send(type="history", room="h", limit=10)
    page = await alice.expect("history", room="h")
    assert [m["seq"] for m in page["messages"]] == list(range(16, 26)) and page["more"]
    await alice.send(type="history", room="h", before=16, limit=10)
    page = await alice.expect("history", room="h")
    assert [m["seq"] for m in page["messages"]] == list(range(6, 16)) and page["more"]
    await alice.send(type="history", room="h", before=6, limit=10)
    page = await alice.expect("history", room="h")
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5] and not page["more"]
