"""HTTP responses both services answer the same way: JSON bodies and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.responses import Response

from shared.metrics import render


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded with orjson."""
    return Response(
        orjson.dumps(data), status_code=status, headers=headers, media_type="application/json"
    )


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in Prometheus text format."""
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)
