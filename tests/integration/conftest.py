"""Integration tests run against real processes; their clients are closed after each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from persister.source_redis import RedisStreamSource
from shared import redis_client
from shared.metrics import PersisterMetrics
from shared.store import Store
from tests.conftest import ChatServer, RedisServer


@pytest.fixture(autouse=True)
def _closes_clients(close_clients: None) -> None:
    """Every test here closes the clients it opened (see ``close_clients``)."""


@pytest.fixture
def start_gateways_on(start_server: Any, tmp_path: Path) -> Any:
    """``start_gateways_on(redis_url, n, **env)``: n ``python -m gateway`` processes sharing
    ``redis_url`` (one Redis or a cluster) and one SQLite store, named gw0..gw<n-1>."""
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    store.migrate()  # the persister's job in a real deployment
    store.close()

    def start(redis_url: str, n: int, **env: Any) -> list[ChatServer]:
        env.setdefault("chat_broker", "redis")
        env.setdefault("chat_redis_url", redis_url)
        return [start_server(module="gateway", chat_gateway_id=f"gw{i}", **env) for i in range(n)]

    return start


@pytest.fixture
def stack(start_server: Any, redis_server: RedisServer, mysql_url: str) -> Any:
    """``stack.gateway(**env)``, ``stack.persister(**env)``: processes on one Redis + MariaDB."""

    class Stack:
        url = mysql_url
        database = mysql_url.rsplit("/", 1)[1].split("?")[0]

        def gateway(self, **env: Any) -> ChatServer:
            return start_server(module="gateway", **self._env(env))

        def persister(self, **env: Any) -> ChatServer:
            return start_server(module="persister", **self._env(env))

        def _env(self, env: dict[str, Any]) -> dict[str, Any]:
            return {
                "chat_broker": "redis",
                "chat_redis_url": redis_server.url,
                "chat_database_url": mysql_url,
                "chat_rate_burst": 100000,
                "chat_user_rate_burst": 100000,
                "chat_user_rate_per_s": 100000,
                "chat_rate_per_s": 100000,
                **env,
            }

    return Stack()


@pytest.fixture
async def persist_source(
    redis_server: RedisServer,
) -> AsyncIterator[Callable[..., tuple[RedisStreamSource, Redis]]]:
    """``persist_source(shards, registry, timeout_s=10)``: a persister's source (consumer
    ``p0``) on the private Redis, and its client (closed after the test), connected as the
    persister connects: no socket timeout, the source's deadline per operation."""
    clients: list[Redis] = []

    def make(
        shards: int, registry: CollectorRegistry, timeout_s: float = 10.0
    ) -> tuple[RedisStreamSource, Redis]:
        redis = redis_client.connect(redis_server.url, pool_size=8, socket_timeout=None)
        assert isinstance(redis, Redis)
        clients.append(redis)
        metrics = PersisterMetrics(registry)
        source = RedisStreamSource(
            redis,
            shards=shards,
            consumer="p0",
            claim_idle_ms=30_000,
            metrics=metrics,
            timeout_s=timeout_s,
        )
        return source, redis

    yield make
    for redis in clients:
        await redis.aclose()
