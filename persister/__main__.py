"""``python -m persister``: the persister service, configured by ``CHAT_*`` variables.

``python -m persister migrate`` (``make migrate``) only brings the database schema to the newest
revision and exits. The service does the same at start unless ``CHAT_MIGRATE=0``.
"""

from __future__ import annotations

import sys

import uvicorn
from prometheus_client import CollectorRegistry

from persister.app import create_app
from persister.source_redis import stream_source
from persister.worker import Worker
from shared import logs, migrations, redis_client
from shared.config import load_settings
from shared.metrics import PersisterMetrics
from shared.store import Store

USAGE = "usage: python -m persister [migrate]"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["migrate"]):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    settings = load_settings()
    logs.configure(settings)
    if args == ["migrate"]:
        print(migrate(settings.database_url))
        return
    if settings.migrate:
        migrate(settings.database_url)
    registry = CollectorRegistry()
    metrics = PersisterMetrics(registry)
    # A cluster source holds one blocking read per stream, and a node may own every stream
    # after failovers; the rest (acks, backlog, readiness pings) needs a few more. One server
    # sees one read at a time plus those few.
    cluster = redis_client.is_cluster(settings.redis_url)
    redis = redis_client.connect(
        settings.redis_url, pool_size=settings.shards + 8 if cluster else 8, socket_timeout=10
    )
    source = stream_source(
        redis,
        shards=settings.shards,
        consumer=settings.persister_id,
        claim_idle_ms=settings.claim_idle_ms,
        metrics=metrics,
        read_ahead=settings.batch_size,
    )
    worker = Worker(
        source,
        Store(settings.database_url),
        metrics,
        batch_size=settings.batch_size,
        flush_interval_s=settings.flush_interval_ms / 1000,
    )
    app = create_app(worker, registry, redis.ping)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.persister_port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through our handler (shared/logs.py)
        access_log=False,
    )


def migrate(url: str) -> str:
    """Bring the schema to the newest revision; returns a line saying where it is. When that is
    impossible (a missing database the account may not create, access denied, unreachable),
    prints one line and exits with code 2 (1 when unreachable)."""
    store = Store(url)
    try:
        revision = migrations.upgrade_or_exit(store.engine)
    finally:
        store.close()
    return f"{migrations.describe(store.engine.url)} is at revision {revision} (head)"


if __name__ == "__main__":
    main()
