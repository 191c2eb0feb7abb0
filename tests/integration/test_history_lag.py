"""A history page is gapless up to ``before - 1`` even while the persister lags (issue 13, item
11): the newest messages below ``before`` may be in neither the store (not written yet) nor the
room's Redis log (capped), and the page must not silently skip them (gateway/node.py history).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis

from shared import events, keys
from shared.config import Settings
from shared.store import Store
from tests.conftest import Client, MariaDB, RedisServer, http_get, join, wait_until

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards
LOG_SIZE = 10  # the smallest allowed: Redis trims the log to about this (MAXLEN ~)


def stored(mariadb: MariaDB, database: str, room: str) -> list[int]:
    rows = mariadb.query(database, "SELECT seq FROM message WHERE room_id = %s ORDER BY seq", room)
    return [int(seq) for (seq,) in rows]


def log_start(redis_url: str, room: str) -> int:
    """The oldest seq the room's Redis log still holds (read directly: test-only)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = client.xrange(keys.log(room, SHARDS), count=1)
    finally:
        client.close()
    return int(str(entries[0][0]).split("-")[0])


async def post(client: Client, room: str, count: int, tag: str) -> list[int]:
    """Send ``count`` messages at once; their seqs, from the echoes."""
    for n in range(count):
        await client.send(type="send", room=room, text=f"{tag}{n}", cid=f"{tag}{n}")
    return [m["seq"] for m in await client.messages(room, count, timeout=60)]


async def history(client: Client, room: str, **page: Any) -> dict[str, Any]:
    """The answer to one ``history`` request: the page, or the error."""
    await client.send(type="history", room=room, **page)
    while True:
        event = await client.next()
        if event["type"] in ("history", "error") and event.get("room") == room:
            return event


def seqs(page: dict[str, Any]) -> list[int]:
    assert page["type"] == "history", page
    return [m["seq"] for m in page["messages"]]


def migrate(url: str) -> None:
    store = Store(url)
    store.migrate()  # the persister's job; in some tests none runs
    store.close()


async def test_a_page_never_skips_what_the_store_has_not_caught_up_with(
    stack: Any, mariadb: MariaDB, redis_server: RedisServer
) -> None:
    room = "lag"
    migrate(stack.url)
    gateway = stack.gateway(chat_recent_log_size=LOG_SIZE)
    persister = stack.persister(chat_flush_interval_ms=50)
    alice = await join(gateway, "alice", room)
    assert await post(alice, room, 10, "a") == list(range(1, 11))
    await asyncio.to_thread(
        wait_until, lambda: len(stored(mariadb, stack.database, room)) == 10, 30, "10 rows"
    )
    persister.stop()  # the store lags from here on
    assert await post(alice, room, 290, "b") == list(range(11, 301))
    first = log_start(redis_server.url, room)
    assert first > 12  # 11 .. first-1 are in neither the store nor the log

    # Right below the log: the store's page would end at 10, far below first - 1.
    error = await history(alice, room, before=first)
    assert error["type"] == "error" and error["code"] == "unavailable"
    status, _ = http_get(f"{gateway.url}/api/rooms/{room}/messages?before={first}")
    assert status == 503
    # Partly in the log: the log's part alone, and more to come.
    page = await history(alice, room, before=first + 3)
    assert seqs(page) == [first, first + 1, first + 2] and page["more"]
    page = await history(alice, room)  # the newest: as much of the last 50 as the log holds
    assert seqs(page) == list(range(max(first, 251), 301)) and page["more"]

    stack.persister(chat_flush_interval_ms=50)
    await asyncio.to_thread(
        wait_until, lambda: len(stored(mariadb, stack.database, room)) == 300, 60, "300 rows"
    )
    page = await history(alice, room, before=first)
    assert seqs(page) == list(range(first - 50, first)) and page["more"]
    status, body = http_get(f"{gateway.url}/api/rooms/{room}/messages?before={first}&limit=5")
    assert status == 200
    assert [m["seq"] for m in orjson.loads(body)["messages"]] == list(range(first - 5, first))


async def test_nothing_stored_yet_below_the_log_is_not_the_first_page(
    stack: Any, redis_server: RedisServer
) -> None:
    room = "unstored"
    migrate(stack.url)
    gateway = stack.gateway(chat_recent_log_size=LOG_SIZE)  # and no persister at all
    alice = await join(gateway, "alice", room)
    await post(alice, room, 300, "m")
    first = log_start(redis_server.url, room)
    assert first > 1

    page = await history(alice, room, before=first + 3)
    assert seqs(page) == [first, first + 1, first + 2]
    assert page["more"]  # 1 .. first-1 exist, stored or not
    error = await history(alice, room, before=first)
    assert error["type"] == "error" and error["code"] == "unavailable"


async def test_seqs_lost_before_they_were_stored_do_not_block_history(stack: Any) -> None:
    """A store holding later seqs than a missing one will not get it any more (Redis lost it
    before a persister read it): history answers what exists instead of unavailable forever."""
    room = "lost"
    migrate(stack.url)
    store = Store(stack.url)
    store.write([events.message(room, seq, "bob", f"m{seq}", events.now_ms()) for seq in (5, 6)])
    store.close()
    gateway = stack.gateway(chat_recent_log_size=LOG_SIZE)
    alice = await join(gateway, "alice", room)
    assert seqs(await history(alice, room)) == [5, 6]
    page = await history(alice, room, before=5)
    assert seqs(page) == [] and not page["more"]
    assert await post(alice, room, 1, "n") == [7]  # the room goes on after what was stored
