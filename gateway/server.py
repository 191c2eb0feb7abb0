"""Running the app under uvicorn, with a shutdown that closes clients with 1001."""

from __future__ import annotations

import contextlib
import socket

import uvicorn
from starlette.types import ASGIApp

from gateway.node import Node
from shared import uvicorn_server
from shared.config import Settings


class Server(uvicorn_server.Server):
    """uvicorn's server, but clients hear 1001 (going away) instead of uvicorn's 1012.

    On SIGINT/SIGTERM it stops accepting, lets every connection send what is pending and
    close with 1001, then runs uvicorn's own shutdown (and the lifespan's, which flushes storage).
    A second Ctrl-C makes uvicorn skip its waits *and* the lifespan's shutdown: the lifespan's
    shutdown runs anyway, because in embedded mode it holds the only copy of echoed messages
    not yet written to the database.
    """

    def __init__(self, config: uvicorn.Config, node: Node) -> None:
        super().__init__(config)
        self.node = node

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self.node.drain()
        await super().shutdown(sockets)
        done = getattr(self.lifespan, "shutdown_event", None)
        if done is not None and not done.is_set():  # uvicorn skipped it (force_exit)
            await self.lifespan.shutdown()


def serve(app: ASGIApp, settings: Settings, node: Node) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    # uvicorn re-raises the Ctrl-C it captured once the graceful shutdown is complete.
    with contextlib.suppress(KeyboardInterrupt):
        Server(uvicorn_config(app, settings), node).run()


def uvicorn_config(app: ASGIApp, settings: Settings, port: int | None = None) -> uvicorn.Config:
    """uvicorn settings derived from ours (frame limit, pings, compression)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through our handler (shared/logs.py)
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
        lifespan="on",
        # The gateway resolves X-Forwarded-For itself, against CHAT_TRUSTED_PROXIES.
        proxy_headers=False,
        access_log=False,
    )
