"""One churn client's life (connect, join, send, wait for the echo, then leave or vanish), and
the tally every churn client adds to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class ChurnStats:
    """What the churn clients did and saw, and the first few of their failures."""

    launched: int = 0
    ok: int = 0
    clean: int = 0
    abrupt: int = 0
    sent: int = 0  # send frames written
    echoed: int = 0
    skipped: int = 0  # not launched: too many still in flight
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)  # room → highest echoed seq
    connect_ms: list[float] = field(default_factory=list)  # connect + hello + joined
    echo_ms: list[float] = field(default_factory=list)  # send → own echo

    def fail(self, reason: str, detail: str) -> None:
        """Count a failure by ``reason``; keep ``detail`` among the first ten."""
        self.failures[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(detail)


class Refused(Exception):
    """The gateway answered a churn client's command with an ``error`` event."""


async def until(ws: ClientConnection, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Read frames until an event matches ``want``; an ``error`` event raises ``Refused``."""
    while True:
        data = await ws.recv()
        frame = orjson.loads(data)
        for event in frame if isinstance(frame, list) else [frame]:
            if not isinstance(event, dict):
                continue
            if event.get("type") == "error":
                raise Refused(f"error {event.get('code')}: {event.get('detail')}")
            if want(event):
                return event


async def _send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(event).decode())


async def live(url: str, room: str, i: int, run_id: str, st: ChurnStats) -> None:
    """Churn client ``i`` of the run ``run_id`` in ``room``, tallied in ``st``. Every other one
    drops its TCP connection instead of leaving and closing."""
    user = f"soak-churn-{i}"
    cid = f"churn-{run_id}-{i}"
    abrupt = i % 2 == 1
    t0 = time.monotonic()
    ws = await connect(f"{url}?user={user}", compression=None, max_size=None)
    try:
        await _send(ws, {"type": "join", "room": room})
        await until(ws, lambda e: e.get("type") == "joined" and e.get("room") == room)
        st.connect_ms.append(1000 * (time.monotonic() - t0))
        t1 = time.monotonic()
        await _send(ws, {"type": "send", "room": room, "text": f"churn {i}", "cid": cid})
        st.sent += 1
        try:
            echo = await until(
                ws,
                lambda e: e.get("type") == "message" and e.get("user") == user
                and e.get("cid") == cid,
            )  # fmt: skip
        except Refused:
            st.sent -= 1  # refused: nothing was published
            raise
        st.echo_ms.append(1000 * (time.monotonic() - t1))
        st.echoed += 1
        st.last_seq[room] = max(st.last_seq.get(room, 0), int(echo["seq"]))
        if abrupt:  # no leave, no close frame: the socket just goes away
            ws.transport.abort()
            st.abrupt += 1
        else:
            await _send(ws, {"type": "leave", "room": room})
            await until(ws, lambda e: e.get("type") == "left")
            await ws.close()
            st.clean += 1
        st.ok += 1
    finally:
        if ws.transport is not None and not ws.transport.is_closing():
            ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 2)
