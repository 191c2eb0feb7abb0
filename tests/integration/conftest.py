"""Integration tests run async against real processes; their clients are closed after each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import OPEN_CLIENTS


@pytest.fixture(autouse=True)
async def close_clients(anyio_backend: str) -> AsyncIterator[None]:
    yield
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        await client.ws.close()
        client.ws.transport.abort()
