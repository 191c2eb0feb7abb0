"""The persister's own HTTP port: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from persister.worker import Worker
from shared.metrics import render


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def create_app(
    worker: Worker,
    registry: CollectorRegistry,
    source_ping: Callable[[], Awaitable[object]],
) -> Starlette:
    """The persister service: the worker runs for the app's lifetime."""

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.wait_for(source_ping(), 2)
        except Exception as exc:
            return _json({"status": "unavailable", "reason": f"redis: {exc!r}"}, 503)
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.store.ping), 5)
        except Exception as exc:
            return _json({"status": "unavailable", "reason": f"database: {exc!r}"}, 503)
        if not worker.healthy:
            return _json({"status": "unavailable", "reason": "database writes are failing"}, 503)
        return _json({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await worker.start()
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
