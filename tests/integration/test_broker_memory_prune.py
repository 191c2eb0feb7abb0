"""The memory broker keeps no entries for rooms nobody uses (issue 13, item 5): a room without
members and without a publish for ``idle_ttl_s`` loses its seq, log and lock, and its seq is
read back from the store when it is used again. Also: the sync publisher's per-room locks go
with their last sender."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker_memory import MemoryBroker
from gateway.presence_memory import MemoryPresence
from gateway.publisher_sync import SyncPublisher
from gateway.seqs import SeqGuard
from shared import redis_client
from shared.config import Settings
from shared.store import Store
from shared.stream_memory import MemoryStream
from tests.conftest import FakeClock, RedisServer

pytestmark = pytest.mark.anyio

ROOMS = 3000
IDLE_S = 60.0
STEP_S = 0.1  # between two rooms' cycles: IDLE_S / STEP_S rooms at most are recent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    store.migrate()
    yield store
    store.close()


def sizes(broker: MemoryBroker, presence: MemoryPresence) -> dict[str, int]:
    return {
        "seq": len(broker._seq),
        "logs": len(broker._logs),
        "locks": len(broker._locks),
        "active": len(broker._active),
        "online": len(presence._online),
    }


async def persist(stream: MemoryStream, store: Store) -> None:
    """What the embedded persister does: write what the broker queued, acknowledge it."""
    entries = await stream.read(1_000_000, 0)
    store.write([entry for _, entry in entries])
    await stream.ack([entry_id for entry_id, _ in entries])


@pytest.mark.parametrize("sync", [False, True])
async def test_join_send_leave_cycles_to_distinct_rooms_leave_bounded_state(
    store: Store, clock: FakeClock, sync: bool
) -> None:
    stream = MemoryStream()
    broker = MemoryBroker(
        log_size=10,
        cid_window_s=1,
        stream=stream,
        store=store,
        clock=clock,
        sync=sync,
        idle_ttl_s=IDLE_S,
    )
    presence = MemoryPresence(broker, stream)
    await broker.start(lambda room, seq, ts, data: None)
    bound = int(IDLE_S / STEP_S) + 1
    for n in range(ROOMS):
        room = f"r{n}"  # what a join, a send and a leave do
        await broker.subscribe(room)
        await broker.recent(room, None, 50)
        await presence.join(room, "alice")
        await broker.publish(room, "alice", "hi", f"c{n}")
        await presence.leave(room, "alice")
        await broker.unsubscribe(room)
        clock.now += STEP_S
        assert max(sizes(broker, presence).values()) <= bound
    if not sync:
        await persist(stream, store)  # sync mode wrote each message before publishing it

    clock.now += IDLE_S
    await broker.recent("later", None, 50)
    assert sizes(broker, presence) == {"seq": 1, "logs": 0, "locks": 0, "active": 1, "online": 0}
    # A pruned room continues after its stored seq.
    again = await broker.publish("r0", "bob", "back", None)
    assert again.message["seq"] == 2
    assert (await broker.recent("r1", 0, 50)).last_seq == 1


async def test_a_room_with_members_is_never_pruned(store: Store, clock: FakeClock) -> None:
    broker = MemoryBroker(log_size=10, cid_window_s=1, store=store, clock=clock, idle_ttl_s=IDLE_S)
    await broker.start(lambda room, seq, ts, data: None)
    await broker.subscribe("kept")
    await broker.publish("kept", "alice", "hi", None)
    clock.now += 10 * IDLE_S
    await broker.publish("other", "bob", "hi", None)  # prunes what is idle
    assert [m["seq"] for m in (await broker.recent("kept", 0, 50)).messages] == [1]
    await broker.unsubscribe("kept")  # idle from now on
    clock.now += IDLE_S
    await broker.publish("other", "bob", "hi", None)
    assert "kept" not in broker._seq and "kept" not in broker._logs


async def test_sync_publisher_locks_go_with_their_last_sender(
    redis_server: RedisServer, store: Store
) -> None:
    settings = Settings(broker="redis", redis_url=redis_server.url, persist_mode="sync")
    client = redis_client.connect(redis_server.url, pool_size=8)
    try:
        publisher = SyncPublisher(client, settings, store, SeqGuard(client, store, settings.shards))
        for n in range(500):
            await publisher.publish(f"s{n}", "alice", "hi", None)
        assert publisher._locks == {}
    finally:
        await client.aclose()
