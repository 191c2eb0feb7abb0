"""``python -m persister``: the persister service, configured by ``CHAT_*`` variables."""

from __future__ import annotations

import uvicorn
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from persister.app import create_app
from persister.source_redis import RedisStreamSource
from persister.worker import Worker
from shared import logs
from shared.config import Settings
from shared.metrics import PersisterMetrics
from shared.store import Store


def main() -> None:
    settings = Settings()
    logs.configure(settings)
    registry = CollectorRegistry()
    metrics = PersisterMetrics(registry)
    redis = Redis.from_url(
        settings.redis_url, decode_responses=True, socket_timeout=10, socket_connect_timeout=2
    )
    source = RedisStreamSource(
        redis,
        shards=settings.shards,
        consumer=settings.persister_id,
        claim_idle_ms=settings.claim_idle_ms,
        metrics=metrics,
    )
    worker = Worker(
        source,
        Store(settings.database_url),
        metrics,
        batch_size=settings.batch_size,
        flush_interval_s=settings.flush_interval_ms / 1000,
        before_start=source.create_groups,
    )
    app = create_app(worker, registry, redis.ping)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.persister_port,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
