"""``python -m bench.persister`` (``make bench-persister``): rows/s into MariaDB.

Measures the two ways a message reaches the database, on private Redis and MariaDB servers:
- async: the persister service draining a backlog of N entries already in the persist streams
  (batches of 200 and 1000, and 2 or 3 replicas at batch 200), from the first row to the last;
- sync: one insert + commit per message (what ``CHAT_PERSIST_MODE=sync`` does per send).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.report.machine import cpu_speed
from shared import keys
from shared.store import Store
from stack.processes import ChatProcess, MariaDB, RedisServer, wait_until

SHARDS = 48  # passed to the persister as CHAT_SHARDS: both must agree


def fill(redis_url: str, count: int, rooms: int) -> None:
    """Put ``count`` message entries into the persist streams, as the publish script would."""
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    now = int(time.time() * 1000)
    seqs = [0] * rooms
    for n in range(count):
        room = f"room{n % rooms}"
        seqs[n % rooms] += 1
        event = {"type": "message", "room": room, "seq": seqs[n % rooms], "user": "bench",
                 "text": f"message {n} " + "x" * 40, "ts": now}  # fmt: skip
        pipe.xadd(keys.room_persist(room, SHARDS), {"e": orjson.dumps(event)})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    client.close()


def scalar(conn: Any, sql: str) -> Any:
    """The first column of the first row (None without rows)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return None if row is None else row[0]


def rows_stored(conn: Any) -> int:
    """Rows in ``message``, polled cheaply (the poll must not compete with the writer).

    ``MAX(message_id)`` reads one index entry. Ids may skip but never repeat, so the highest id
    is at least the row count: it reaching the target is necessary, and an exact ``COUNT(*)``
    (a scan, so only then) confirms it.
    """
    return int(scalar(conn, "SELECT MAX(message_id) FROM message") or 0)


def rows_counted(conn: Any) -> int:
    return int(scalar(conn, "SELECT COUNT(*) FROM message"))


def measure_async(
    work: Path,
    redis_server: RedisServer,
    mariadb: MariaDB,
    batch: int,
    count: int,
    replicas: int = 1,
) -> float:
    database = f"async_{batch}_{replicas}"
    url = mariadb.create_database(database)
    redis_server_flush(redis_server)
    fill(redis_server.url, count, rooms=64)
    persisters = [
        ChatProcess(
            work / f"persister-{batch}-{replicas}-{n}",
            module="persister",
            env={
                "CHAT_REDIS_URL": redis_server.url,
                "CHAT_DATABASE_URL": url,
                "CHAT_BATCH_SIZE": str(batch),
                "CHAT_FLUSH_INTERVAL_MS": "1000",
                "CHAT_SHARDS": str(SHARDS),
                "CHAT_PERSISTER_ID": f"persister-{n}",
            },
        )
        for n in range(replicas)
    ]
    for persister in persisters:
        persister.start()
    # One connection for the whole measurement: a connection per poll costs more CPU than the
    # persister itself on two cores.
    conn = mariadb.connect(database)
    try:
        wait_until(lambda: tables_exist(conn) and rows_stored(conn) > 0, 60, "first rows")
        started = time.perf_counter()
        wait_until(lambda: rows_stored(conn) >= count and rows_counted(conn) >= count, 600, "all")
        return count / (time.perf_counter() - started)
    finally:
        conn.close()
        for persister in persisters:
            persister.stop()


def tables_exist(conn: Any) -> bool:
    return scalar(conn, "SHOW TABLES LIKE 'message'") is not None


def redis_server_flush(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()


def measure_sync(mariadb: MariaDB, count: int) -> float:
    url = mariadb.create_database("sync")
    store = Store(url)
    store.migrate()
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for n in range(count):
        store.write([{"type": "message", "room": "sync", "seq": n + 1, "user": "bench",
                      "text": f"message {n} " + "x" * 40, "ts": now}])  # fmt: skip
    rate = count / (time.perf_counter() - started)
    store.close()
    return rate


def measure(
    count: int, sync_count: int, work: Path | None = None, replicas: Sequence[int] = (2, 3)
) -> dict[str, Any]:
    """Every mode's rows/s on private Redis and MariaDB servers, started in ``work`` (a temporary
    folder if None) and stopped before returning: ``count`` rows drained by one persister at
    batch 200 and 1000 and by ``replicas`` persisters at batch 200, ``sync_count`` rows
    committed one by one. ``make bench`` records it as experiment S."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="chat-bench-persister-") as tmp:
            return measure(count, sync_count, Path(tmp), replicas)
    modes: list[dict[str, Any]] = []
    redis_server = RedisServer(work / "redis").start()
    try:
        mariadb = MariaDB(work / "mariadb").start()
        try:
            for batch in (200, 1000):
                rate = measure_async(work, redis_server, mariadb, batch, count)
                modes.append(_mode(f"async, batch {batch}", "async", batch, 1, rate))
            # Replicas share the streams through the consumer group.
            for n in replicas:
                rate = measure_async(work, redis_server, mariadb, 200, count, replicas=n)
                modes.append(_mode(f"async, batch 200, {n} replicas", "async", 200, n, rate))
            rate = measure_sync(mariadb, sync_count)
            modes.append(_mode("sync, one commit per message", "sync", 1, 1, rate))
        finally:
            mariadb.stop()
    finally:
        redis_server.stop()
    return {"rows": count, "sync_rows": sync_count, "modes": modes}


def _mode(name: str, kind: str, batch: int, replicas: int, rate: float) -> dict[str, Any]:
    return {"mode": name, "kind": kind, "batch": batch, "replicas": replicas,
            "rows_per_s": round(rate)}  # fmt: skip


def main() -> None:
    count = int(os.environ.get("BENCH_ROWS", "50000"))
    sync_count = int(os.environ.get("BENCH_SYNC_ROWS", "3000"))
    results = measure(count, sync_count)
    print(f"\npersister throughput ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {cpu_speed()}, python {sys.version.split()[0]}); "
          f"{count} rows async, {sync_count} rows sync")  # fmt: skip
    print("| mode | rows/s |\n|---|---|")
    for mode in results["modes"]:
        print(f"| {mode['mode']} | {mode['rows_per_s']:,} |")


if __name__ == "__main__":
    main()
