"""The persister on a real local Redis Cluster (3 primaries, 3 replicas) and MariaDB: every shard's
stream is read, every entry becomes one row, and a primary's SIGKILL mid-traffic loses nothing
(issue 8; docs/cluster.md, "Persister").

The tests play the gateways' part: they XADD persist entries as the publish script writes them
(``{"e": <event JSON>}`` on the room's shard stream), with unique ``(room, seq)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import ClusterNode, RedisCluster

from persister.source_cluster import ClusterStreamSource
from persister.source_redis import stream_source
from persister.worker import Worker
from shared import keys, redis_client
from shared.metrics import PersisterMetrics
from shared.store import Store
from stack.cluster import LocalRedisCluster
from tests.conftest import ChatServer, MariaDB, eventually, wait_until

pytestmark = pytest.mark.anyio

SHARDS = 48
STREAMS = [keys.persist(shard, SHARDS) for shard in range(SHARDS)]
FAILOVER_BOUND = 15.0  # s: node timeout 2 s + failure agreement + election (measured ~4 s)


@pytest.fixture
async def client(cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    """The test's own cluster client (the fabricated producer and the checks)."""
    rc = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        decode_responses=True,
    )
    await rc.initialize()
    try:
        yield rc
    finally:
        await rc.aclose()


def one_room_per_shard() -> list[str]:
    """48 room names, one on each shard (so every stream, and every primary, gets entries)."""
    rooms: dict[int, str] = {}
    n = 0
    while len(rooms) < SHARDS:
        rooms.setdefault(keys.shard_of(f"room{n}", SHARDS), f"room{n}")
        n += 1
    return [rooms[shard] for shard in range(SHARDS)]


def owner(client: RedisCluster, room: str) -> int:
    """The port of the primary holding the room's persist stream, as the client sees it."""
    node = client.get_node_from_key(keys.room_persist(room, SHARDS))
    assert node is not None
    return int(node.port)


def entry(room: str, seq: int) -> dict[str, bytes]:
    """A persist entry as the publish script writes it."""
    event = {"type": "message", "room": room, "seq": seq, "user": "ann",
             "text": f"{room} #{seq}", "ts": int(time.time() * 1000)}  # fmt: skip
    return {"e": orjson.dumps(event)}


async def fill(client: RedisCluster, rooms: list[str], seqs: range) -> None:
    """XADD messages ``seqs`` of every room (one pipeline, split per node by the client)."""
    pipe = client.pipeline(transaction=False)
    for room in rooms:
        for seq in seqs:
            pipe.xadd(keys.room_persist(room, SHARDS), entry(room, seq))
    await pipe.execute()


async def xadd_acked(client: RedisCluster, room: str, seq: int) -> tuple[int, int]:
    """XADD then ``WAIT 1 100`` pipelined on ONE connection to the stream's primary; returns
    the primary's port and how many replicas have the entry (WAIT counts the replicas that have
    this connection's writes: with 1, a SIGKILL of the primary cannot lose the entry). A node
    without replicas answers after the 100 ms."""
    stream = keys.room_persist(room, SHARDS)
    node = client.get_node_from_key(stream)
    assert node is not None
    conn = node.acquire_connection()
    try:
        command = ["XADD", stream, "*", "e", entry(room, seq)["e"]]
        await conn.send_packed_command(conn.pack_commands([command, ["WAIT", 1, 100]]))
        await conn.read_response()
        replicas = await conn.read_response()
    except BaseException:
        await conn.disconnect()  # never hand a half-read connection back
        raise
    finally:
        node.release(conn)
    return int(node.port), int(replicas)


def stored(mariadb: MariaDB, database: str) -> Counter[tuple[str, int]]:
    """How many rows each ``(room, seq)`` has (the unique key makes 2 impossible, but count)."""
    rows = mariadb.query(database, "SELECT room_id, seq FROM message")
    return Counter((str(room), int(seq)) for room, seq in rows)


def row_count(mariadb: MariaDB, database: str) -> int:
    try:
        return int(mariadb.query(database, "SELECT COUNT(*) FROM message")[0][0])
    except Exception:  # the persister has not created the table yet
        return 0


async def wait_rows(mariadb: MariaDB, database: str, count: int, timeout: float = 30) -> None:
    await asyncio.to_thread(
        wait_until, lambda: row_count(mariadb, database) >= count, timeout, f"{count} rows"
    )


def assert_exactly_once(mariadb: MariaDB, database: str, written: dict[str, int]) -> None:
    """Every room has exactly the rows 1..written[room], each once, and nothing else."""
    rows = stored(mariadb, database)
    expected = {(room, seq) for room, last in written.items() for seq in range(1, last + 1)}
    assert set(rows) == expected, (len(rows), len(expected))
    assert set(rows.values()) == {1}


async def drained(client: RedisCluster) -> bool:
    """Every persist stream empty (entries are deleted once stored) and nothing pending."""
    pipe = client.pipeline(transaction=False)
    for stream in STREAMS:
        pipe.xlen(stream)
        pipe.xpending(stream, keys.PERSIST_GROUP)
    replies = await pipe.execute()
    lengths, pending = replies[::2], replies[1::2]
    return sum(lengths) == 0 and all(p["pending"] == 0 for p in pending)


def persister(
    start_server: Any, cluster: LocalRedisCluster, mysql_url: str, **env: Any
) -> ChatServer:
    """``python -m persister`` on the cluster, by configuration only."""
    return start_server(
        module="persister",
        chat_redis_url=cluster.url,
        chat_database_url=mysql_url,
        chat_shards=SHARDS,
        **env,
    )


async def test_persister_stores_every_shard_of_a_cluster_exactly_once(
    cluster: LocalRedisCluster,
    client: RedisCluster,
    mariadb: MariaDB,
    mysql_url: str,
    start_server: Any,
) -> None:
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    rooms = one_room_per_shard()
    by_primary = Counter(owner(client, room) for room in rooms)
    assert set(by_primary) == set(cluster.primaries())  # 16 streams on each primary
    await fill(client, rooms, range(1, 11))  # a backlog before the persister starts...
    persister(start_server, cluster, mysql_url, chat_batch_size=100, chat_flush_interval_ms=50)
    await fill(client, rooms, range(11, 21))  # ...and new entries while it runs
    await wait_rows(mariadb, database, 20 * len(rooms))
    await eventually(lambda: drained(client), 15, "every stream drained, nothing pending")
    assert_exactly_once(mariadb, database, {room: 20 for room in rooms})


async def test_cluster_source_stop_writes_what_it_read_and_leaves_no_task(
    cluster: LocalRedisCluster, client: RedisCluster, mariadb: MariaDB, mysql_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    rooms = one_room_per_shard()
    # More per stream than one reply (64): the readers cannot take it all at once.
    await fill(client, rooms, range(1, 101))
    total = 100 * len(rooms)

    async def run_until(rows: int) -> None:
        redis = redis_client.connect(cluster.url, pool_size=SHARDS + 8)
        store = Store(mysql_url)
        store.migrate()
        source = stream_source(
            redis,
            shards=SHARDS,
            consumer="p1",
            claim_idle_ms=30000,
            metrics=PersisterMetrics(CollectorRegistry()),
            read_ahead=50,
        )
        assert isinstance(source, ClusterStreamSource)
        worker = Worker(source, store, source.metrics, batch_size=50, flush_interval_s=0.05)
        try:
            await worker.start()
            await wait_rows(mariadb, database, rows)
            await worker.stop()
        finally:
            await redis.aclose()
            store.close()
        readers = [t for t in asyncio.all_tasks() if t.get_name().startswith("persist-reader")]
        assert readers == []

    await run_until(100)  # stopped mid-backlog
    # Whatever the first worker was handed, it wrote and acknowledged before stopping: nothing
    # is pending, and rows + what is still in the streams is everything, once.
    pipe = client.pipeline(transaction=False)
    for stream in STREAMS:
        pipe.xlen(stream)
        pipe.xpending(stream, keys.PERSIST_GROUP)
    replies = await pipe.execute()
    assert all(p["pending"] == 0 for p in replies[1::2])
    left = sum(replies[::2])
    rows = stored(mariadb, database)
    assert set(rows.values()) == {1} and len(rows) + left == total, (len(rows), left)
    # The readers did not take the whole backlog ahead of the batcher (backpressure).
    assert left > 0

    await run_until(total)  # the same consumer finishes
    await eventually(lambda: drained(client), 15, "every stream drained")
    assert_exactly_once(mariadb, database, {room: 100 for room in rooms})


async def test_persister_keeps_draining_through_a_primary_failover(
    cluster: LocalRedisCluster,
    client: RedisCluster,
    mariadb: MariaDB,
    mysql_url: str,
    start_server: Any,
) -> None:
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    rooms = one_room_per_shard()
    victim = cluster.primaries()[0]
    replica = cluster.replica_of(victim)
    assert replica is not None
    victim_rooms = [room for room in rooms if owner(client, room) == victim]
    assert len(victim_rooms) == SHARDS // 3
    persister(start_server, cluster, mysql_url, chat_batch_size=50, chat_flush_interval_ms=50)

    written = dict.fromkeys(rooms, 0)  # last seq a replica acknowledged, per room
    stop = asyncio.Event()
    refreshing = asyncio.Lock()

    async def produce(room: str) -> None:
        """Keep writing the room's next seq; retry the same seq until a replica has it. The
        promoted replica refuses writes (``NOREPLICAS``) until the old primary is back as its
        replica (min-replicas-to-write), and the persister's reads there with them."""
        while not stop.is_set():
            try:
                _, replicas = await xadd_acked(client, room, written[room] + 1)
                if replicas < 1:
                    raise RuntimeError(f"{room}: no replica has seq {written[room] + 1}")
            except Exception:
                # The primary is gone, the slot moved, or the entry may be lost: learn the
                # topology again and write the same seq again (a duplicate is stored once).
                await asyncio.sleep(0.1)
                async with refreshing:
                    with contextlib.suppress(Exception):  # slots not covered, mid-failover
                        await client.nodes_manager.initialize()
                continue
            written[room] += 1
            await asyncio.sleep(0.05)  # ~20 entries/s per room, ~1000/s in all

    producers = [asyncio.create_task(produce(room)) for room in rooms]
    try:
        await wait_rows(mariadb, database, 300)  # the persister is draining every primary
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim, signal.SIGKILL)
        await asyncio.to_thread(
            wait_until,
            lambda: replica in cluster.primaries(),
            FAILOVER_BOUND,
            "the replica's promotion",
        )
        promoted_after = time.monotonic() - killed_at
        # The old primary rejoins as the promoted node's replica; until it is in sync, the
        # promoted node takes no writes.
        await asyncio.to_thread(cluster.restart, victim)
        await asyncio.to_thread(
            wait_until, cluster.healthy, FAILOVER_BOUND, "the old primary back as a replica"
        )
        # Writes reach the promoted node: every room of the victim moves on by 10 entries.
        after = {room: written[room] for room in victim_rooms}

        async def moved_on() -> bool:
            return all(written[room] >= after[room] + 10 for room in victim_rooms)

        await eventually(moved_on, FAILOVER_BOUND, "writes on the promoted replica")
    finally:
        stop.set()
        await asyncio.gather(*producers)
    total = sum(written.values())
    await wait_rows(mariadb, database, total)
    await eventually(lambda: drained(client), 15, "every stream drained, nothing pending")
    print(f"promoted {promoted_after:.1f} s after SIGKILL; {total} entries, all stored once")
    assert_exactly_once(mariadb, database, written)
