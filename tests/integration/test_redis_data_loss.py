"""A Redis that comes back having lost acknowledged writes never issues a seq twice.

``appendfsync everysec`` may lose the last second of writes in a crash; a Redis may also come
back from an older snapshot, or empty. Its room seqs are then lower than seqs already delivered
and stored. Before the fix, the next messages were acknowledged with those seqs again: every
gateway dropped them as already seen and the persister's insert was a no-op, so they existed
nowhere (gateway/seqs.py).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from shared.config import Settings
from shared.store import Store
from tests.conftest import MariaDB, RedisServer, join, send_acked, wait_until

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards


def stored(mariadb: MariaDB, database: str, room: str) -> list[tuple[int, str]]:
    rows = mariadb.query(
        database, "SELECT seq, content FROM message WHERE room_id = %s ORDER BY seq", room
    )
    return [(int(seq), str(text)) for seq, text in rows]


def snapshot(server: RedisServer) -> Path:
    """A copy of the append-only files as they are now (every acknowledged write is in them)."""
    copy = server.dir.parent / "snapshot"
    shutil.copytree(server.dir / "appendonlydir", copy)
    return copy


def restart_redis(server: RedisServer, snapshot: Path | None) -> None:
    """SIGKILL, then start from ``snapshot`` (an AOF that lost its tail), or empty."""
    server.stop(signal.SIGKILL)
    shutil.rmtree(server.dir / "appendonlydir")
    if snapshot is not None:
        shutil.copytree(snapshot, server.dir / "appendonlydir")
    server.start()


async def test_restart_from_an_older_snapshot_continues_after_every_stored_seq(
    stack: Any, redis_server: RedisServer, mariadb: MariaDB
) -> None:
    room = "snap"
    a, b = stack.gateway(chat_gateway_id="gw0"), stack.gateway(chat_gateway_id="gw1")
    stack.persister()
    alice, bob = await join(a, "alice", room), await join(b, "bob", room)
    acked = [await send_acked(alice, room, f"m{n}", cid=f"c{n}") for n in range(7)]
    seven = snapshot(redis_server)
    acked += [await send_acked(alice, room, f"m{n}", cid=f"c{n}") for n in range(7, 10)]
    await asyncio.to_thread(
        wait_until, lambda: len(stored(mariadb, stack.database, room)) == 10, 30, "10 rows"
    )

    await asyncio.to_thread(restart_redis, redis_server, seven)
    direct = redis.Redis.from_url(redis_server.url)
    assert int(direct.get(keys.seq(room, SHARDS)) or 0) == 7  # Redis is behind what was acked
    acked += [await send_acked(alice, room, f"after {n}", cid=f"a{n}") for n in range(3)]

    expected = [(m["seq"], m["text"]) for m in acked]
    assert [seq for seq, _ in expected] == list(range(1, 14))
    seen = await bob.messages(room, 13, timeout=30)  # on the other gateway
    assert [(m["seq"], m["text"]) for m in seen] == expected
    await asyncio.to_thread(
        wait_until, lambda: len(stored(mariadb, stack.database, room)) == 13, 30, "13 rows"
    )
    assert stored(mariadb, stack.database, room) == expected
    direct.close()


async def test_empty_redis_while_the_persister_lags_never_reissues_a_delivered_seq(
    stack: Any, redis_server: RedisServer, mariadb: MariaDB
) -> None:
    room = "empty"
    schema = Store(stack.url)
    schema.migrate()  # the persister's job; it does not run yet
    schema.close()
    a, b = stack.gateway(chat_gateway_id="gw0"), stack.gateway(chat_gateway_id="gw1")
    alice, bob = await join(a, "alice", room), await join(b, "bob", room)
    first = [await send_acked(alice, room, f"m{n}", cid=f"c{n}") for n in range(10)]
    await bob.messages(room, 10)

    # Nothing was stored yet (no persister ran), and Redis comes back with nothing.
    await asyncio.to_thread(restart_redis, redis_server, None)
    after = [await send_acked(alice, room, f"after {n}", cid=f"a{n}") for n in range(3)]
    assert [m["seq"] for m in first] == list(range(1, 11))
    assert [m["seq"] for m in after] == [11, 12, 13]  # past what the gateways delivered
    seen = await bob.messages(room, 3, timeout=30)
    assert [(m["seq"], m["text"]) for m in seen] == [(m["seq"], m["text"]) for m in after]

    stack.persister()
    await asyncio.to_thread(
        wait_until, lambda: len(stored(mariadb, stack.database, room)) == 3, 30, "3 rows"
    )
    assert stored(mariadb, stack.database, room) == [(m["seq"], m["text"]) for m in after]
