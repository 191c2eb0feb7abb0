"""The memory broker: seq, recent log, cid idempotency window, presence, persist entries."""

from __future__ import annotations

import orjson
import pytest

from gateway.broker_memory import MemoryBroker
from gateway.presence_memory import MemoryPresence
from shared.stream_memory import MemoryStream
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio


async def started(**kwargs: object) -> tuple[MemoryBroker, list[tuple[str, int, dict]]]:
    delivered: list[tuple[str, int, dict]] = []
    broker = MemoryBroker(log_size=5, cid_window_s=300, **kwargs)  # type: ignore[arg-type]
    await broker.start(
        lambda room, seq, ts, data: delivered.append((room, seq, orjson.loads(data)))
    )
    return broker, delivered


async def test_seq_is_per_room_and_gapless() -> None:
    broker, delivered = await started()
    await broker.subscribe("a")
    await broker.subscribe("b")
    for room in ["a", "b", "a", "a", "b"]:
        await broker.publish(room, "u", "t", None)
    assert [(r, s) for r, s, _ in delivered] == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]


async def test_unsubscribed_rooms_are_not_delivered_but_still_logged() -> None:
    broker, delivered = await started()
    await broker.publish("quiet", "u", "t", None)
    assert delivered == []
    log = await broker.recent("quiet", 0, 50)
    assert log.last_seq == 1 and [m["seq"] for m in log.messages] == [1]


async def test_recent_log_is_capped() -> None:
    broker, _ = await started()
    for n in range(8):
        await broker.publish("r", "u", str(n), None)
    log = await broker.recent("r", 0, 50)
    assert [m["seq"] for m in log.messages] == [4, 5, 6, 7, 8]
    assert [m["seq"] for m in (await broker.recent("r", None, 2)).messages] == [7, 8]
    assert [m["seq"] for m in (await broker.recent("r", 6, 50)).messages] == [7, 8]


async def test_cid_window(clock: FakeClock) -> None:
    broker, delivered = await started(clock=clock)
    await broker.subscribe("r")
    first = await broker.publish("r", "alice", "x", "c1")
    again = await broker.publish("r", "alice", "x", "c1")
    assert again.duplicate and again.message == first.message and not first.duplicate
    assert not (await broker.publish("r", "bob", "x", "c1")).duplicate  # per user
    assert not (await broker.publish("s", "alice", "x", "c1")).duplicate  # per room
    clock.now = 299
    assert (await broker.publish("r", "alice", "x", "c1")).duplicate
    clock.now = 301
    late = await broker.publish("r", "alice", "x", "c1")
    assert not late.duplicate and late.message["seq"] == 3
    assert [s for r, s, _ in delivered if r == "r"] == [1, 2, 3]


async def test_persist_entries_and_presence() -> None:
    stream = MemoryStream()
    broker, delivered = await started(stream=stream)
    presence = MemoryPresence(broker, stream)
    await broker.subscribe("r")
    await presence.join("r", "alice")
    await presence.join("r", "alice")  # second connection: no news
    await broker.publish("r", "alice", "hi", None)
    await presence.leave("r", "alice")
    assert await presence.members("r") == ["alice"]
    await presence.leave("r", "alice")
    assert await presence.members("r") == []
    kinds = [e["type"] for _, e in await stream.read(10, 0)]
    assert kinds == ["join", "message", "leave"]
    told = [d for _, s, d in delivered if s == 0]
    assert told == [
        {"type": "presence", "room": "r", "joined": ["alice"], "left": []},
        {"type": "presence", "room": "r", "joined": [], "left": ["alice"]},
    ]
    assert await presence.rooms() == [{"room": "r", "online": 0, "last_seq": 1}]
