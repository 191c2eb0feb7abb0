"""What an open WebSocket keeps alive in the gateway: every full garbage collection walks it.

A gateway holds thousands of sockets for hours; each suspended coroutine under a connection is
walked by every full collection (docs/benchmarks.md, "sixth pass"). Here the app runs in this
process under uvicorn, with real clients, so its objects can be counted.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from types import CoroutineType
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from gateway.app import build_node, create_app
from gateway.server import uvicorn_config
from shared.config import Settings
from stack.processes import free_port
from tests.conftest import Client, eventually

pytestmark = pytest.mark.anyio

CLIENTS = 20


def starlette_coroutines() -> int:
    """Suspended coroutines of Starlette's code, in this process."""
    # type(), not isinstance(): the heap may hold weak proxies to dead objects, which raise
    # ReferenceError when isinstance() asks them for their class.
    return sum(
        1
        for o in gc.get_objects()
        if type(o) is CoroutineType and "/starlette/" in o.cr_code.co_filename
    )


async def test_an_open_socket_holds_no_starlette_layers(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(broker="memory", data_dir=tmp_path, port=port, host="127.0.0.1")
    node = build_node(settings, CollectorRegistry(), writes_store=True)
    server = uvicorn.Server(uvicorn_config(create_app(node, CollectorRegistry()), settings))
    serving = asyncio.create_task(server.serve())
    clients: list[Client] = []
    try:

        async def started() -> bool:
            return server.started

        await eventually(started, 10, "uvicorn to listen")
        before = starlette_coroutines()
        for i in range(CLIENTS):
            # A room each: no presence traffic piles up unread in the clients, which would
            # hold their close handshakes behind it.
            client = await Client.connect(f"ws://127.0.0.1:{port}/ws?user=u{i}&room=r{i}")
            await client.expect("joined", room=f"r{i}")
            clients.append(client)
        held: Any = (starlette_coroutines() - before) / CLIENTS
        # Through Starlette's middleware and router: about ten per socket. Straight to the
        # endpoint: only its pending ``receive``.
        assert held <= 1
    finally:
        for client in clients:
            await client.close()
        server.should_exit = True
        await serving
