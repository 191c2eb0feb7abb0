"""The persister's own HTTP port: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from persister.worker import Worker
from shared.responses import json_response, metrics_response


def create_app(
    worker: Worker,
    registry: CollectorRegistry,
    source_ping: Callable[[], Awaitable[object]],
) -> Starlette:
    """The persister service's HTTP port. The worker is started before the app (so that Redis
    refusing it is one line, not a failed server start: ``persister/__main__.py``); the app's
    shutdown stops it, writing what it holds, before the server exits."""

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.wait_for(source_ping(), 2)
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": f"redis: {exc!r}"}, 503)
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.store.ping), 5)
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": f"database: {exc!r}"}, 503)
        if not worker.healthy:
            return json_response(
                {"status": "unavailable", "reason": "database writes are failing"}, 503
            )
        return json_response({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return metrics_response(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await worker.stop()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
