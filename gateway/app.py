"""The gateway's ASGI application: ``/ws`` straight to its endpoint, the rest through Starlette
(routes, and a lifespan that starts and stops the node)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway import endpoints
from gateway.broker import Broker
from gateway.broker_memory import MemoryBroker
from gateway.broker_redis import RedisBroker
from gateway.node import Node
from gateway.presence import PresenceManager
from gateway.presence_memory import MemoryPresence
from gateway.presence_redis import RedisPresence
from shared import redis_client
from shared.config import Settings
from shared.metrics import GatewayMetrics
from shared.store import Store
from shared.stream_memory import MemoryStream


class Service(Protocol):
    """Something the app runs beside the node (the embedded persister)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_node(
    settings: Settings,
    registry: CollectorRegistry,
    *,
    stream: MemoryStream | None = None,
    writes_store: bool = False,
) -> Node:
    """A node with the broker and store the settings ask for (nothing connects yet)."""
    store = Store(settings.database_url)
    metrics = GatewayMetrics(registry)
    broker: Broker
    presence: PresenceManager
    if settings.broker == "memory":
        memory = MemoryBroker(
            log_size=settings.recent_log_size,
            cid_window_s=settings.cid_window_s,
            stream=stream,
            store=store,
            sync=settings.persist_mode == "sync",
            idle_ttl_s=settings.room_idle_ttl_s,
        )
        broker, presence = memory, MemoryPresence(memory, stream)
    else:
        # One client for both: bounded connections and no automatic retries (a publish
        # retried after a lost reply could publish twice).
        redis = redis_client.connect(settings.redis_url, pool_size=settings.redis_pool_size)
        broker = RedisBroker(redis, settings, store, metrics)
        presence = RedisPresence(redis, settings, metrics)
    return Node(settings, broker, presence, store, metrics, writes_store=writes_store)


class GatewayApp:
    """``/ws`` goes straight to its endpoint; everything else (the page, the API, probes,
    metrics and the lifespan) through Starlette.

    A WebSocket lives for hours, and through Starlette its endpoint would sit under the
    middleware and router layers: about ten suspended coroutines and their closures per
    connection, which every full garbage collection walks (docs/benchmarks.md, "sixth pass"),
    and two more calls per frame sent. The endpoint needs none of them: it answers its own
    errors and closes; an exception escaping it reaches uvicorn as it did through Starlette
    (logged, the socket closed with 1011).
    """

    def __init__(self, starlette: Starlette) -> None:
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await endpoints.websocket(WebSocket(scope, receive, send))
        else:
            await self.starlette(scope, receive, send)


def create_app(
    node: Node, registry: CollectorRegistry, services: Sequence[Service] = ()
) -> GatewayApp:
    """The gateway app. ``services`` start after the node and stop after it has drained."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if node.store is not None and node.writes_store and node.settings.migrate:
            await asyncio.to_thread(node.store.migrate)  # the schema at head (shared/migrations)
        await node.start()
        started: list[Service] = []
        try:
            for service in services:
                await service.start()
                started.append(service)
            yield {"node": node, "registry": registry}
        finally:
            await node.drain()
            await node.close()
            for service in reversed(started):
                await service.stop()
            if node.store is not None:
                node.store.close()

    routes = [
        Route("/", endpoints.index),
        Route("/api/rooms", endpoints.rooms),
        Route("/api/rooms/{room}/messages", endpoints.room_messages),
        Route("/healthz", endpoints.healthz),
        Route("/readyz", endpoints.readyz),
        Route("/metrics", endpoints.metrics),
        Mount("/static", StaticFiles(directory=endpoints.STATIC), name="static"),
    ]  # and /ws: GatewayApp
    return GatewayApp(Starlette(routes=routes, lifespan=lifespan))
