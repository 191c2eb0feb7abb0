"""``python -m bench.publish``: what one publish costs on the Redis broker.

Each publish is ONE round trip (EVALSHA of the publish script: seq, log, persist stream, cid,
PUBLISH). This measures it on a private redis-server: sequential awaited publishes (latency per
message) and ``BENCH_CONCURRENCY`` publishers at once (throughput of one gateway process).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from gateway.publisher import publisher_for
from shared import keys, redis_client
from shared.config import Settings
from stack.processes import RedisServer


async def run(url: str, count: int, concurrency: int) -> tuple[float, float]:
    settings = Settings(broker="redis", redis_url=url)
    redis = redis_client.connect(url, pool_size=settings.redis_pool_size)
    broker = publisher_for(redis, settings, store=None)
    for room in ("seq", "par"):
        await redis.set(keys.seq(room, settings.shards), 0)  # a room that exists
    started = time.perf_counter()
    for n in range(count):
        await broker.publish("seq", "bench", f"message {n}", f"c{n}")
    sequential_us = (time.perf_counter() - started) / count * 1e6

    async def publisher(worker: int) -> None:
        for n in range(count // concurrency):
            await broker.publish("par", "bench", f"message {n}", f"p{worker}-{n}")

    started = time.perf_counter()
    await asyncio.gather(*(publisher(w) for w in range(concurrency)))
    per_s = (count // concurrency * concurrency) / (time.perf_counter() - started)
    await redis.aclose()
    return sequential_us, per_s


def main() -> None:
    count = int(os.environ.get("BENCH_PUBLISHES", "20000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    with tempfile.TemporaryDirectory(prefix="chat-bench-publish-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            sequential_us, per_s = asyncio.run(run(server.url, count, concurrency))
        finally:
            server.stop()
    print(f"publish: 1 round trip each; sequential {sequential_us:.0f} µs/message "
          f"({1e6 / sequential_us:,.0f}/s); {concurrency} concurrent: {per_s:,.0f}/s")  # fmt: skip


if __name__ == "__main__":
    main()
