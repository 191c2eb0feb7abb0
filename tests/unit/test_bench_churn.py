"""The soak's churn clients against a tiny in-process gateway stand-in: clean and abrupt lives,
refusals counted, and the scheduler launching at its rate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from bench.soak.churn import Churn
from bench.soak.client import ChurnStats, live
from bench.soak.settings import SoakSettings


async def gateway(ws: ServerConnection, refuse: bool = False) -> None:
    """Answers join, send (echo with a seq, or an error) and leave, the way the gateway does."""
    seq = 0
    user = str(ws.request.path.rsplit("user=", 1)[-1]) if ws.request else "?"
    async for data in ws:
        cmd: dict[str, Any] = orjson.loads(data)
        if cmd["type"] == "join":
            await ws.send(orjson.dumps([{"type": "joined", "room": cmd["room"]}]).decode())
        elif cmd["type"] == "send" and refuse:
            await ws.send(orjson.dumps({"type": "error", "code": "unavailable"}).decode())
        elif cmd["type"] == "send":
            seq += 1
            echo = {"type": "message", "room": cmd["room"], "user": user, "cid": cmd["cid"],
                    "seq": seq}  # fmt: skip
            await ws.send(orjson.dumps(echo).decode())
        elif cmd["type"] == "leave":
            await ws.send(orjson.dumps({"type": "left", "room": cmd["room"]}).decode())


def test_clean_and_abrupt_lives() -> None:
    async def main() -> ChurnStats:
        st = ChurnStats()
        async with serve(gateway, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            for i in range(4):
                await live(f"ws://127.0.0.1:{port}/ws", "r", i, "run", st)
        return st

    st = asyncio.run(main())
    assert (st.ok, st.clean, st.abrupt, st.sent, st.echoed) == (4, 2, 2, 4, 4)
    assert st.last_seq == {"r": 1} and len(st.connect_ms) == len(st.echo_ms) == 4


def test_refusals_are_counted_not_raised() -> None:
    async def refusing(ws: ServerConnection) -> None:
        await gateway(ws, refuse=True)

    async def main() -> ChurnStats:
        async with serve(refusing, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            churn = Churn(f"ws://127.0.0.1:{port}/ws", ["r"], SoakSettings(churn_per_s=50))
            await churn.run(time.monotonic() + 0.2)
        return churn.stats

    st = asyncio.run(main())
    assert st.launched >= 5
    assert st.failures == {"Refused": st.launched}
    assert st.sent == st.echoed == st.ok == 0
    assert st.examples[0].startswith("churn 0: Refused(")
