"""The idiomatic python-socketio chat app under uvicorn (make bench, experiment P).

A client connects with ``?room=<name>`` (repeatable) and is in those rooms; ``send`` with a
payload naming one of its rooms is emitted to that room as ``message`` (the sender gets its own
echo, as in the project). ``AsyncRedisManager`` carries every emit to the other processes.

Runs in its own virtualenv (``.venv/peer-python``), never imported by the project::

    PEER_REDIS_URL=redis://... PEER_NAME=peer1 python -m uvicorn --app-dir bench/peers/python \\
        app:create_app --factory --port 9001
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

import socketio  # type: ignore[import-not-found, unused-ignore]


def create_app() -> Any:
    """The ASGI app: Socket.IO on ``/socket.io/``, ``/healthz`` beside it."""
    name = os.environ.get("PEER_NAME", "peer")
    # WebSocket only: no long-polling, so no sticky sessions are needed behind round robin.
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(os.environ["PEER_REDIS_URL"]),
        transports=["websocket"],
    )

    @sio.event  # type: ignore[untyped-decorator, unused-ignore]
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        for room in parse_qs(environ.get("QUERY_STRING", "")).get("room", []):
            await sio.enter_room(sid, room)
        # Which process the client landed on: the load generator counts users per process.
        await sio.emit("hello", {"gateway": name}, to=sid)

    @sio.event  # type: ignore[untyped-decorator, unused-ignore]
    async def send(sid: str, payload: Any) -> None:
        room = payload.get("room") if isinstance(payload, dict) else None
        if isinstance(room, str) and room in sio.rooms(sid):
            await sio.emit("message", payload, to=room)

    def startup() -> None:
        # python-socketio subscribes to Redis on the first connection; subscribing at start
        # instead means no process misses the first messages of the others.
        sio.manager_initialized = True
        sio.manager.initialize()

    async def healthz(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ok = scope["type"] == "http" and scope["path"] == "/healthz"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 404,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok\n" if ok else b"not found\n"})

    return socketio.ASGIApp(sio, other_asgi_app=healthz, on_startup=startup)
