"""One chaos client: connects through nginx, joins its room, sends at a random (Poisson) pace
while the traffic lasts, logs every send's outcome and every message it receives, and, whenever
its socket drops, reconnects and rejoins with ``since`` = the last seq it saw."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.chaos.records import ClientLog, Disconnect, SendRecord

# What a dropped socket or a refused connection raises.
DROPPED = (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake)
MAX_BACKOFF_S = 1.0
REJOIN_AFTER_S = 0.5  # a refused join (unavailable) is tried again after this


@dataclass
class Shared:
    """What every client of a run shares: where to connect, the pace, the run's records."""

    url: str
    run_id: str  # in every cid and text: unique to this run
    rate: float  # messages/s per client
    sending: asyncio.Event = field(default_factory=asyncio.Event)  # set: the traffic began
    deadline: float = float("inf")  # time.monotonic() when sending stops
    closing: bool = False  # the run is over: no reconnect
    sends: list[SendRecord] = field(default_factory=list)
    disconnects: list[Disconnect] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # unexpected exceptions of the clients


class ChaosClient:
    """A user in one room, for the whole run, across as many connections as it takes."""

    def __init__(self, user: str, room: str, shared: Shared, rng: random.Random) -> None:
        self.user = user
        self.room = room
        self.shared = shared
        self.rng = rng
        self.log = ClientLog(user, room)
        self.pending: dict[str, SendRecord] = {}  # cid → its send, on the current connection
        self.joined = False  # the room is joined on the current connection
        self.gateway = ""  # of the current (or last) connection, from ``hello``
        self.count = 0
        self.connections = 0  # sockets opened so far (the current one's number)
        self._ws: ClientConnection | None = None
        self._drop: Disconnect | None = None  # the last drop, until the room is joined again
        self._retries: set[asyncio.Task[None]] = set()  # rejoins after a refusal, this socket

    async def run(self) -> None:
        """Connect, and reconnect after every drop, until the run closes."""
        backoff = 0.05
        while not self.shared.closing:
            try:
                await self._session()
            except DROPPED:
                pass
            except Exception as exc:  # a bug here, or a frame off the protocol: reported
                self.shared.errors.append(f"{self.user}: {exc!r}")
            if self.joined:
                backoff = 0.05
            self._dropped()
            if self.shared.closing:
                return
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))  # retry backoff, jittered
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def close(self) -> None:
        """A clean close at the end of the run (``run`` then returns)."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(*DROPPED):
                await asyncio.wait_for(ws.close(), 2)
            ws.transport.abort()

    async def _session(self) -> None:
        ws = await connect(
            f"{self.shared.url}?user={self.user}",
            open_timeout=5,
            close_timeout=1,
            max_size=None,
            compression=None,
            ping_interval=5,
            ping_timeout=10,
        )
        self._ws = ws
        self.connections += 1
        sender: asyncio.Task[None] | None = None
        try:
            await self._join(ws)
            sender = asyncio.create_task(self._send_loop(ws), name=f"send-{self.user}")
            async for data in ws:
                self._frame(ws, data)
        finally:
            tasks = [t for t in (sender, *self._retries) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._ws = None
            ws.transport.abort()

    def _dropped(self) -> None:
        """The connection is gone: what it had pending stays unanswered."""
        self.pending.clear()
        was_joined, self.joined = self.joined, False
        if was_joined and not self.shared.closing:
            self._drop = Disconnect(self.user, time.monotonic(), self.gateway)
            self.shared.disconnects.append(self._drop)

    async def _join(self, ws: ClientConnection) -> None:
        join: dict[str, Any] = {"type": "join", "room": self.room}
        if self.log.high is not None:  # a rejoin: replay everything after the last seq seen
            join["since"] = self.log.high
        await ws.send(orjson.dumps(join).decode())

    async def _rejoin_later(self, ws: ClientConnection) -> None:
        await asyncio.sleep(REJOIN_AFTER_S)
        if self._ws is ws and not self.joined:
            with contextlib.suppress(*DROPPED):
                await self._join(ws)

    async def _send_loop(self, ws: ClientConnection) -> None:
        await self.shared.sending.wait()
        while True:
            await asyncio.sleep(self.rng.expovariate(self.shared.rate))
            if time.monotonic() >= self.shared.deadline:
                return
            if not self.joined:
                continue  # nothing to send to until the room is joined again
            self.count += 1
            cid = f"{self.shared.run_id}-{self.user}-{self.count}"
            record = SendRecord(
                self.user, self.room, cid, f"{self.user} #{self.count} {self.shared.run_id}",
                time.monotonic(),
            )  # fmt: skip
            self.pending[cid] = record
            event = {"type": "send", "room": self.room, "text": record.text, "cid": cid}
            try:
                await ws.send(orjson.dumps(event).decode())
            except DROPPED:
                self.pending.pop(cid, None)  # never left this process: not a send
                return
            self.shared.sends.append(record)

    def _frame(self, ws: ClientConnection, data: str | bytes) -> None:
        frame = orjson.loads(data)
        for event in frame if isinstance(frame, list) else [frame]:
            kind = event.get("type")
            if kind == "message" and event.get("room") == self.room:
                self._message(event)
            elif kind == "joined" and event.get("room") == self.room:
                self._joined(event)
            elif kind == "error":
                self._error(ws, event)
            elif kind == "hello":
                self.gateway = str(event.get("gateway", ""))

    def _message(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        self.log.receive(
            int(event["seq"]), str(event["text"]), str(event["user"]), now, self.connections
        )
        cid = event.get("cid")
        if event.get("user") == self.user and isinstance(cid, str) and cid in self.pending:
            record = self.pending.pop(cid)
            record.outcome, record.seq = "acked", int(event["seq"])
            record.answered_at = now

    def _joined(self, event: dict[str, Any]) -> None:
        rejoin = self.log.baseline is not None
        self.log.joined(int(event["seq"]))
        now = time.monotonic()
        for m in event.get("messages", []):
            seq, text, user = int(m["seq"]), str(m["text"]), str(m["user"])
            self.log.receive(seq, text, user, now, self.connections, replay=True)
        if rejoin and not event.get("recovered", False):
            self.log.unrecovered += 1
        self.joined = True
        if self._drop is not None:
            self._drop.back_at = now
            self._drop = None

    def _error(self, ws: ClientConnection, event: dict[str, Any]) -> None:
        cid = event.get("cid")
        if isinstance(cid, str) and cid in self.pending:
            record = self.pending.pop(cid)
            record.outcome, record.code = "refused", str(event.get("code", ""))
            record.answered_at = time.monotonic()
        elif event.get("room") == self.room and not self.joined:
            task = asyncio.create_task(self._rejoin_later(ws))  # the join was refused
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
