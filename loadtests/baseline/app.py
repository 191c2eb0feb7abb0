"""A minimal Starlette + encode/broadcaster chat: the design most Python tutorials show.

Per message: INCR for a seq, one PUBLISH through broadcaster; per recipient: its own subscriber
queue and ``send_text``. It speaks the subset of the protocol the load generator needs
(``hello``, ``joined``, ``message`` with seq/ts/user/text/cid; ``send``), one room per
connection (``/ws?user=NAME&room=R``). Run: ``uvicorn loadtests.baseline.app:app``, with
``BASELINE_REDIS_URL`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

REDIS_URL = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0")
broadcast = Broadcast(REDIS_URL)
store = aioredis.from_url(REDIS_URL)


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    user = ws.query_params.get("user") or "guest"
    room = ws.query_params.get("room") or "lobby"
    await ws.send_text(json.dumps({"type": "hello", "user": user, "gateway": "baseline"}))
    async with broadcast.subscribe(channel=room) as subscriber:
        seq = int(await store.get(f"seq:{room}") or 0)
        joined = {"type": "joined", "room": room, "seq": seq, "members": [], "messages": []}
        await ws.send_text(json.dumps({**joined, "recovered": False}))

        async def forward() -> None:
            async for event in subscriber:
                await ws.send_text(event.message)

        forwarder = asyncio.create_task(forward())
        try:
            while True:
                data = json.loads(await ws.receive_text())
                if data.get("type") != "send":
                    continue
                seq = await store.incr(f"seq:{room}")
                message = {
                    "type": "message",
                    "room": room,
                    "seq": seq,
                    "user": user,
                    "text": data.get("text", ""),
                    "ts": int(time.time() * 1000),
                    "cid": data.get("cid"),
                }
                await broadcast.publish(channel=room, message=json.dumps(message))
        except WebSocketDisconnect:
            pass
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    yield
    await broadcast.disconnect()


app = Starlette(routes=[WebSocketRoute("/ws", chat)], lifespan=lifespan)
