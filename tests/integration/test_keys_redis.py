"""Key encoding through a real Redis (issue 13, item 10): the cid key of one (room, user, cid)
is never another's, and ``/api/rooms`` lists exactly the rooms used, whatever their names spell."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import orjson
import pytest
import redis
import redis.asyncio

from gateway.publisher import publisher_for
from shared import keys
from shared.config import Settings
from shared.store import Store
from tests.conftest import ChatServer, Client, RedisServer, http_get

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards  # the gateways' default

# (user, cid) pairs whose old key `...:cid:room#user#cid` was the same: the second user's send
# was answered with the first user's message and never published.
CLASHING = [("ann", "x#c1"), ("ann#x", "c1")]


async def join(server: ChatServer, user: str, *rooms: str) -> Client:
    """``tests.conftest.join`` for any user name: ``#``, ``:`` and the like are URL-quoted."""
    client = await Client.connect(f"{server.ws_url}?user={quote(user, safe='')}")
    assert (await client.expect("hello"))["user"] == user
    for room in rooms:
        await client.send(type="join", room=room)
        await client.expect("joined", room=room)
    return client


@pytest.fixture
def start_gateways(start_gateways_on: Any, redis_server: RedisServer) -> Any:
    """``start_gateways(n, **env)``: n ``python -m gateway`` processes on one Redis."""
    return functools.partial(start_gateways_on, redis_server.url)


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_users_whose_names_and_cids_join_alike_both_publish(
    redis_server: RedisServer, tmp_path: Path, mode: Literal["async", "sync"]
) -> None:
    # The gateway's own publisher: the PUBLISH script (async), or RESERVE, the database insert
    # and COMMIT (sync); each keys its cid as keys.cid(room, user, cid).
    settings = Settings(broker="redis", redis_url=redis_server.url, persist_mode=mode)
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    store.migrate()
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    publisher = publisher_for(client, settings, store)
    try:
        for room in ("r", "a:seq:b", "a:cid:b"):
            first = [await publisher.publish(room, u, f"from {u}", c) for u, c in CLASHING]
            assert [p.duplicate for p in first] == [False, False], (room, first)
            assert [(p.message["seq"], p.message["user"], p.message.get("cid")) for p in first] == [
                (1, "ann", "x#c1"),
                (2, "ann#x", "c1"),
            ]
            # Each resend is recognised as its sender's own message, and only its own.
            again = [await publisher.publish(room, u, f"from {u}", c) for u, c in CLASHING]
            assert [(p.duplicate, p.message) for p in again] == [(True, p.message) for p in first]
            entries: Any = await client.xrange(keys.log(room, SHARDS))
            logged = [orjson.loads(f["e"]) for _, f in entries]
            assert [(e["seq"], e["user"]) for e in logged] == [(1, "ann"), (2, "ann#x")]
    finally:
        await publisher.close()
        await client.aclose()
        store.close()


async def test_through_gateways_the_second_user_is_published_not_a_duplicate(
    start_gateways: Any,
) -> None:
    a, b = start_gateways(2)
    watcher = await join(b, "watcher", "clash")
    first = await join(a, CLASHING[0][0], "clash")
    await first.send(type="send", room="clash", text="one", cid=CLASHING[0][1])
    await first.expect("message", room="clash", cid=CLASHING[0][1])
    second = await join(b, CLASHING[1][0], "clash")
    await second.send(type="send", room="clash", text="two", cid=CLASHING[1][1])
    echo = await second.expect("message", room="clash")
    assert (echo["seq"], echo["user"], echo["text"], echo["cid"]) == (2, "ann#x", "two", "c1")
    seen = await watcher.messages("clash", 2)
    assert [(m["seq"], m["user"], m["cid"]) for m in seen] == [
        (1, "ann", "x#c1"),
        (2, "ann#x", "c1"),
    ]


async def test_room_list_has_no_phantom_rooms(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    (gateway,) = start_gateways(1)
    # Room names with ':' that spell other key kinds, and users whose names do too.
    rooms = ["plain", "a:seq:b", "c:presence:d", "e:cid:f", "g:log:h", "seq", "presence"]
    user = await join(gateway, "u:seq:ghost1", *rooms)
    other = await join(gateway, "v#w:presence:ghost2", *rooms[:3])
    for room in rooms[:3]:
        await user.send(type="send", room=room, text="hi", cid="c:seq:ghost3")
        await other.send(type="send", room=room, text="hi", cid="#:presence:ghost4")
    for room in rooms[:3]:
        await user.messages(room, 2)
    # Rooms with keys of every other kind but no seq and no presence hash: not listed.
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for room in ("q:seq:ghost5", "r:presence:ghost6"):
            client.set(keys.lock(room, SHARDS), "token")
            client.xadd(keys.log(room, SHARDS), {"e": "{}"})
            client.set(keys.cid(room, "u:seq:ghost7", "c", SHARDS), "{}")
            client.zadd(keys.presence_user(room, "x:seq:ghost8", SHARDS), {"gw": 1})
    finally:
        client.close()
    status, body = http_get(gateway.url + "/api/rooms")
    assert status == 200
    listed = {r["room"]: r for r in orjson.loads(body)}
    assert set(listed) == set(rooms)
    assert listed["a:seq:b"]["last_seq"] == 2 and listed["a:seq:b"]["online"] == 2
    assert listed["presence"]["last_seq"] == 0 and listed["presence"]["online"] == 1


async def test_room_list_work_does_not_grow_with_unrelated_keys(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    """``/api/rooms`` reads the shards' rooms indexes: no SCAN, and the same few commands on a
    Redis holding 300,000 unrelated keys as on an empty one (issue 13, item 4)."""
    gateway, fresh = start_gateways(2)  # each answers its first call from Redis, not a cache
    rooms = ["lobby", "dev", "ops"]
    user = await join(gateway, "ann", *rooms)
    for room in rooms:
        await user.send(type="send", room=room, text="hi")
        await user.messages(room, 1)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def listing_costs(gateway: Any) -> tuple[list[str], dict[str, int]]:
        before = calls()
        status, body = http_get(gateway.url + "/api/rooms")
        assert status == 200
        after = calls()
        used = {c: n - before.get(c, 0) for c, n in after.items() if n != before.get(c, 0)}
        for ours_or_handshake in ("info", "hello", "client|setinfo"):
            used.pop(ours_or_handshake, None)
        return [r["room"] for r in orjson.loads(body)], used

    try:
        listed, small = listing_costs(gateway)
        assert listed == sorted(rooms)
        for start in range(0, 300_000, 10_000):
            client.mset({f"unrelated:{n}": "x" for n in range(start, start + 10_000)})
        assert client.dbsize() > 300_000
        listed, big = listing_costs(fresh)
    finally:
        client.close()
    assert listed == sorted(rooms)
    assert "scan" not in small and "scan" not in big
    assert big == small  # the same commands, the same number of each
    assert sum(big.values()) <= SHARDS + 2 * len(rooms)
