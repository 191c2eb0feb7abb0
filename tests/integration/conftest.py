"""Integration tests run against real processes; their clients are closed after each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
