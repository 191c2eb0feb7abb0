"""Idle rooms' Redis state expires (issue 13, item 5): after ``CHAT_ROOM_IDLE_TTL_S`` without a
publish, a room's seq, log and verified marker are gone, and it comes back from the database as
after a Redis that lost its data (gateway/seqs.py): seqs continue, recovery and history answer
from the store, nothing is issued twice, and the database being down means ``unavailable``.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from shared.config import Settings
from tests.conftest import Client, MariaDB, RedisServer, join, send_acked, wait_until

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards
TTL_S = 1  # the smallest CHAT_ROOM_IDLE_TTL_S
ROOM_KINDS = {"seq", "verified", "log", "presence", "presence_user", "cid", "lock"}


def stored(mariadb: MariaDB, database: str, room: str) -> list[tuple[int, str]]:
    rows = mariadb.query(
        database, "SELECT seq, content FROM message WHERE room_id = %s ORDER BY seq", room
    )
    return [(int(seq), str(text)) for seq, text in rows]


def conflicts(mariadb: MariaDB, database: str) -> int:
    [(count,)] = mariadb.query(database, "SELECT COUNT(*) FROM message_conflict")
    return int(count)


def room_keys(room: str) -> list[str]:
    return [keys.seq(room, SHARDS), keys.log(room, SHARDS), keys.verified(room, SHARDS)]


def gone(client: redis.Redis, room: str) -> bool:
    return client.exists(*room_keys(room)) == 0


def keyspace(client: redis.Redis) -> Counter[str]:
    """Keys by kind (keys.kind): SCAN, in the test only."""
    return Counter(keys.kind(key) for key in client.scan_iter(count=1000))


def indexed_rooms(client: redis.Redis) -> int:
    return sum(client.zcard(keys.rooms(shard, SHARDS)) for shard in range(SHARDS))


async def wait(predicate: Any, what: str, timeout: float = 30) -> None:
    await asyncio.to_thread(wait_until, predicate, timeout, what)


async def test_an_expired_room_continues_from_the_database(
    stack: Any, redis_server: RedisServer, mariadb: MariaDB
) -> None:
    room = "idle"
    direct = redis.Redis.from_url(redis_server.url, decode_responses=True)
    env = {"chat_room_idle_ttl_s": TTL_S}
    a, b = stack.gateway(chat_gateway_id="gw0", **env), stack.gateway(chat_gateway_id="gw1", **env)
    stack.persister(chat_flush_interval_ms=50)
    alice = await join(a, "alice", room)
    first = [await send_acked(alice, room, f"m{n}", cid=f"c{n}") for n in range(5)]
    assert [m["seq"] for m in first] == [1, 2, 3, 4, 5]
    await alice.close()  # nobody holds the room: no gateway's delivered seq helps it
    await wait(lambda: len(stored(mariadb, stack.database, room)) == 5, "5 rows")
    await wait(lambda: gone(direct, room), "the room's keys to expire")
    index = keys.room_rooms(room, SHARDS)  # alice's leave came last: a ttl after it
    await wait(lambda: direct.zscore(index, room) is None, "the room to leave the index")

    # A gateway that never saw the room: recovery and the seq come from the database.
    bob = await Client.connect(f"{b.ws_url}?user=bob")
    await bob.send(type="join", room=room, since=2)
    joined = await bob.expect("joined", room=room)
    assert joined["seq"] == 5 and joined["recovered"]
    assert [(m["seq"], m["text"]) for m in joined["messages"]] == [(3, "m2"), (4, "m3"), (5, "m4")]
    sixth = await send_acked(bob, room, "after", cid="after")
    assert sixth["seq"] == 6  # not 1
    await bob.send(type="history", room=room)
    page = await bob.expect("history", room=room)
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5, 6] and not page["more"]

    # Expired again while bob stays joined, and the database is down: the publish cannot
    # verify the seq, so it is refused (never a guessed seq); the resend after goes on.
    await wait(lambda: gone(direct, room), "the room's keys to expire again")
    await asyncio.to_thread(mariadb.stop)
    try:
        await bob.send(type="send", room=room, text="down", cid="down")
        error = await bob.expect("error", room=room)
        assert (error["code"], error["cid"]) == ("unavailable", "down")
        carol = await Client.connect(f"{a.ws_url}?user=carol")
        await carol.send(type="join", room=room)
        assert (await carol.expect("error", room=room))["code"] == "unavailable"
        assert gone(direct, room)
    finally:
        await asyncio.to_thread(mariadb.start)
    seventh = await send_acked(bob, room, "down", cid="down")
    assert seventh["seq"] == 7

    await wait(lambda: len(stored(mariadb, stack.database, room)) == 7, "7 rows")
    texts = ["m0", "m1", "m2", "m3", "m4", "after", "down"]
    assert stored(mariadb, stack.database, room) == list(enumerate(texts, 1))
    assert conflicts(mariadb, stack.database) == 0
    direct.close()


async def test_join_leave_cycles_to_distinct_rooms_leave_no_redis_state_behind(
    start_gateways_on: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    rooms, batch = 2000, 50
    (gateway,) = start_gateways_on(
        redis_server.url,
        1,
        chat_room_idle_ttl_s=TTL_S,
        chat_cid_window_s=1,
        chat_join_rate_per_s=100000,
        chat_join_rate_burst=100000,
        chat_user_join_rate_per_s=100000,
        chat_user_join_rate_burst=100000,
    )
    direct = redis.Redis.from_url(redis_server.url, decode_responses=True)
    alice = await join(gateway, "alice")
    for start in range(0, rooms, batch):
        names = [f"churn{n}" for n in range(start, start + batch)]
        for name in names:
            await alice.send(type="join", room=name)
        for name in names:
            await alice.expect("joined", room=name)
        for name in names[::10]:  # some rooms get a message (a log, a cid key)
            await send_acked(alice, name, "hi", cid="c")
        for name in names:
            await alice.send(type="leave", room=name)
        for name in names:
            await alice.expect("left", room=name)
    during = keyspace(direct)
    assert during["seq"] > 0  # the last rooms' state is still there

    def nothing_left() -> bool:
        return not ROOM_KINDS & keyspace(direct).keys() and indexed_rooms(direct) == 0

    await wait(nothing_left, "every room's keys to expire")
    # What stays is per shard, not per room: the persist streams (the persister's backlog; no
    # persister runs here).
    assert set(keyspace(direct)) <= {"persist"}
    assert len(list(direct.scan_iter(count=1000))) <= SHARDS
    direct.close()


@pytest.fixture
def start_gateways(start_gateways_on: Any, redis_server: RedisServer) -> Any:
    return functools.partial(start_gateways_on, redis_server.url)


async def test_publishes_keep_a_room_alive_and_presence_expires_with_its_last_entry(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    """Each publish refreshes the room's keys. A presence hash expires with its last entry:
    here the gateway is killed, so nobody leaves and no gateway sweeps the room any more."""
    room = "busy"
    (gateway,) = start_gateways(1, chat_room_idle_ttl_s=TTL_S, chat_presence_ttl_s=1)
    direct = redis.Redis.from_url(redis_server.url, decode_responses=True)
    alice = await join(gateway, "alice", room)
    await send_acked(alice, room, "m0", cid="c0")

    def ttls() -> list[int]:
        return [direct.pttl(key) for key in room_keys(room)]

    full = TTL_S * 1000
    assert all(0 < ttl <= full for ttl in ttls())
    await wait(lambda: max(ttls()) < full / 2, "half the ttl to pass")
    await send_acked(alice, room, "m1", cid="c1")
    assert min(ttls()) > full / 2  # refreshed by the publish
    assert 0 < direct.pttl(keys.presence(room, SHARDS)) <= 1000

    gateway.stop(9)  # SIGKILL: no leave, no sweep
    await wait(lambda: direct.exists(keys.presence(room, SHARDS)) == 0, "the presence hash")
    await wait(lambda: gone(direct, room), "the room's keys")
    # Only the cid keys are left: they live for CHAT_CID_WINDOW_S (300 s here), not the ttl.
    assert ROOM_KINDS & keyspace(direct).keys() == {"cid"}
    direct.close()


async def test_a_room_written_in_sync_mode_expires_too(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    """Sync mode logs and fans out in its COMMIT script: its log and index entry get the idle
    ttl as the PUBLISH script's do, and the seq continues from the database afterwards."""
    room = "synced"
    (gateway,) = start_gateways(1, chat_room_idle_ttl_s=TTL_S, chat_persist_mode="sync")
    direct = redis.Redis.from_url(redis_server.url, decode_responses=True)
    alice = await join(gateway, "alice", room)
    sent = [await send_acked(alice, room, f"m{n}", cid=f"c{n}") for n in range(3)]
    assert [m["seq"] for m in sent] == [1, 2, 3]
    assert direct.exists(keys.log(room, SHARDS)) == 1
    await alice.close()
    await wait(lambda: gone(direct, room), "the room's keys to expire")
    index = keys.room_rooms(room, SHARDS)
    await wait(lambda: direct.zscore(index, room) is None, "the room to leave the index")

    bob = await join(gateway, "bob", room)
    assert (await send_acked(bob, room, "after", cid="after"))["seq"] == 4
    direct.close()
