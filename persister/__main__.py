"""``python -m persister``: the persister service, configured by ``CHAT_*`` variables.

``python -m persister migrate`` (``make migrate``) only brings the database schema to the newest
revision and exits. The service does the same at start unless ``CHAT_MIGRATE=0``.

At start the service needs Redis: it creates the consumer groups before it serves. When Redis
refuses (a wrong password, an ACL that denies the persister's commands) or cannot be reached,
it prints one line, ``cannot start: redis at redis://persister:***@host:6379/0: <reason>``
(password masked), and exits with code 2 (a setting or a privilege to fix) or 1 (unreachable),
as a migration does; the orchestrator restarts it. Once started, it rides out Redis outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from urllib.parse import unquote

import uvicorn
from prometheus_client import CollectorRegistry
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
)

from persister.app import create_app
from persister.source_redis import stream_source
from persister.worker import Worker
from shared import logs, migrations, redis_client, uvicorn_server
from shared.config import load_settings
from shared.metrics import PersisterMetrics
from shared.redis_client import REDIS_DOWN, AnyRedis, masked
from shared.store import Store

USAGE = "usage: python -m persister [migrate]"
# Redis answered, and said no: a wrong password or user, a password for a server without
# users, an ACL that denies a command. None of these fixes itself.
REFUSED = (AuthenticationError, AuthenticationWrongNumberOfArgsError, NoPermissionError)


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
    # No socket timeout: the source gives each operation one deadline (persister/streams.py).
    redis = redis_client.connect(
        settings.redis_url, pool_size=settings.shards + 8 if cluster else 8, socket_timeout=None
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
    config = uvicorn.Config(
        create_app(worker, registry, redis.ping),
        host=settings.host,
        port=settings.persister_port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through our handler (shared/logs.py)
        access_log=False,
    )
    # uvicorn.run(), with the worker started first: Redis refusing it is not a server start-up
    # failure (uvicorn would log the traceback), but one line.
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve(uvicorn_server.Server(config), worker, redis, settings.redis_url))
    except StartupError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C: the server stopped gracefully, then re-raised it
        pass


class StartupError(Exception):
    """The service cannot start: one line for the operator, and the exit code."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.exit_code = exit_code


async def serve(server: uvicorn.Server, worker: Worker, redis: AnyRedis, redis_url: str) -> None:
    """Start the worker, then serve until a signal; the app's shutdown stops the worker."""
    try:
        await worker.start()
    except REDIS_DOWN as exc:
        with contextlib.suppress(*REDIS_DOWN):
            await redis.aclose()
        raise start_error(exc, redis_url) from None
    try:
        await server.serve()
    finally:
        await worker.stop()  # if the server failed to start (a no-op after its shutdown)


def start_error(exc: BaseException, redis_url: str) -> StartupError:
    """``cannot start: redis at <url, password masked>: <reason>``: code 2 when Redis refused
    the login or a command (a setting or a privilege to fix), 1 when it could not be reached.
    A cluster client wraps the refusal of every node: the refusal is named, not the wrapper."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    refused = next((e for e in chain if isinstance(e, REFUSED)), None)
    shown = refused or exc
    reason = " ".join(f"{type(shown).__name__}: {shown}".split())
    for secret in _passwords(redis_url):
        reason = reason.replace(secret, "***")
    line = f"cannot start: redis at {masked(redis_url)}: {reason}"
    return StartupError(line, 1 if refused is None else 2)


def _passwords(url: str) -> set[str]:
    """The password of ``url`` as written and percent-decoded (none: an empty set)."""
    user_part = url.partition("://")[2].rpartition("@")[0]
    password = user_part.partition(":")[2]
    return {p for p in (password, unquote(password)) if p}


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
