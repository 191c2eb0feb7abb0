"""The Socket.IO mode of the load generator (``client="socketio"``): the peers of ``make bench``.

Engine.IO v4 over a plain WebSocket, one packet per text frame: the server opens with
``0{...}``, the client connects to the default namespace with ``40`` and waits for ``40{...}``,
answers each ping ``2`` with ``3``; events are ``42["name", payload]``. The room is joined at
connect time (``?room=`` in the URL).

Socket.IO has no room seq, so the check is per sender: every ``send`` payload carries the
sender's name, a counter per (sender, room) starting at 0, its send time (epoch ms) and a cid.
Each recipient expects each (room, sender) counter to go up by exactly one; a jump is a gap, a
skipped counter arriving later is reordered, a counter seen before is a duplicate, all counted
into the same :class:`~loadtests.verify.Tally` as the project's protocol. The sender receives its
own message too (``io.to(room).emit``): that echo answers its pending cid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson

from loadtests.client import HAVE_PICOWS
from loadtests.verify import RoomSeq, Tally, UserVerifier

QUERY = "EIO=4&transport=websocket"
CONNECT = b"40"  # Engine.IO message + Socket.IO CONNECT, default namespace
PONG = b"3"
CONNECT_ERROR = "connect_error"  # the error code a refused connect is counted under

# Engine.IO packet types (first character) and, inside a message ("4"), Socket.IO's (second).
_ENGINE = {"0": "open", "1": "close", "2": "ping", "3": "pong", "5": "upgrade", "6": "noop"}
_SOCKET = {"0": "connect", "1": "disconnect", "2": "event", "3": "ack", "4": "connect_error"}


class Packet(NamedTuple):
    """One decoded packet: ``kind`` (open, ping, connect, event, ...), an event's ``name``, and
    its JSON ``data`` (an event's payload, the open/connect object, a connect error)."""

    kind: str
    name: str = ""
    data: Any = None


def parse(frame: bytes | bytearray | memoryview | str) -> Packet:
    """Decode one text frame; ``ValueError`` for anything that is not an Engine.IO v4 packet."""
    raw = frame.encode() if isinstance(frame, str) else bytes(frame)
    if not raw:
        raise ValueError("empty frame")
    engine = chr(raw[0])
    if engine in _ENGINE:
        kind = _ENGINE[engine]
        return Packet(kind, data=orjson.loads(raw[1:]) if kind == "open" else None)
    if engine != "4" or len(raw) < 2 or chr(raw[1]) not in _SOCKET:
        raise ValueError(f"not an Engine.IO v4 packet: {raw[:20]!r}")
    kind = _SOCKET[chr(raw[1])]
    body = raw[2:]
    if body.startswith(b"/"):  # a namespace other than the default one: "/chat,..."
        comma = body.find(b",")
        body = body[comma + 1 :] if comma >= 0 else b""
    start = 0
    while start < len(body) and 0x30 <= body[start] <= 0x39:  # an ack id precedes the array
        start += 1
    data = orjson.loads(body[start:]) if start < len(body) else None
    if kind == "event":
        if type(data) is not list or not data or type(data[0]) is not str:
            raise ValueError(f"malformed event: {raw[:40]!r}")
        return Packet(kind, data[0], data[1] if len(data) > 1 else None)
    return Packet(kind, data=data)


def event_frame(name: str, payload: Any) -> bytes:
    """``42["name", payload]``: one event for the default namespace."""
    return b"42[" + orjson.dumps(name) + b"," + orjson.dumps(payload) + b"]"


class SocketIOPayloads:
    """``send`` events with a padded text of a fixed size and a counter per (sender, room)."""

    def __init__(self, text_bytes: int) -> None:
        self.pad = "x" * max(0, text_bytes)
        self.counters: dict[tuple[str, str], int] = {}

    def send(self, room: str, cid: str, user: str = "") -> bytes:
        """``user``'s next ``send`` to ``room``, stamped with the time it is built."""
        n = self.counters.get((user, room), 0)
        self.counters[user, room] = n + 1
        text = (cid + " " + self.pad)[: max(len(cid), len(self.pad))]
        payload = {
            "room": room, "user": user, "n": n, "cid": cid, "ts": time.time() * 1000, "text": text,
        }  # fmt: skip
        return event_frame("send", payload)


class SocketIOVerifier(UserVerifier):
    """One virtual user's view of a Socket.IO peer, with the interface of ``UserVerifier``.

    ``rooms`` holds the rooms joined (once the connect ack came), each ``RoomSeq.last`` counting
    the messages received in it; the per-sender streams are in ``streams``. ``reply`` sends the
    protocol's two answers (``40`` to the open packet, ``3`` to a ping): the client sets it.
    """

    def __init__(self, user: str, tally: Tally, track_senders: bool = False) -> None:
        super().__init__(user, tally, track_senders)
        self.expected: tuple[str, ...] = ()  # the rooms of the connect URL
        self.connected = False  # the connect ack (40{...}) arrived: the rooms are joined
        self.streams: dict[tuple[str, str], RoomSeq] = {}  # (room, sender) -> counters seen
        self.reply: Callable[[bytes], None] = lambda _frame: None

    def expect(self, rooms: Iterable[str]) -> None:
        """The rooms the connect URL names (joined by the server at connect time)."""
        self.expected = tuple(rooms)

    def on_frame(self, data: bytes | bytearray | memoryview | str, now_ms: float) -> None:
        """Account for and check one received text frame (``now_ms``: receipt, epoch ms)."""
        tally = self.tally
        tally.frames += 1
        tally.bytes += len(data)
        try:
            packet = parse(data)
        except ValueError:  # orjson's decode error is a ValueError too
            tally.unexpected += 1
            return
        if packet.kind == "event" and packet.name == "message":
            self._deliver(packet.data, now_ms)
            return
        tally.other_events += 1
        if packet.kind == "ping":
            self.reply(PONG)
        elif packet.kind == "open":
            self.reply(CONNECT)
        elif packet.kind == "connect":
            self.connected = True
            self.rooms = {room: RoomSeq(0) for room in self.expected}
        elif packet.kind == "event" and packet.name == "hello":
            hello = packet.data
            self.gateway = str(hello.get("gateway", "")) if type(hello) is dict else ""
        elif packet.kind == "connect_error":
            self.last_error = CONNECT_ERROR
            tally.errors[CONNECT_ERROR] += 1
            message = packet.data.get("message") if type(packet.data) is dict else packet.data
            tally.note(f"{self.user}: connect error {message!r}")
        elif packet.kind in ("disconnect", "close"):
            tally.note(f"{self.user}: the server sent {packet.kind}")

    def _deliver(self, payload: Any, now_ms: float) -> None:
        """Check one ``message`` event's payload and count it if it is a new delivery."""
        tally = self.tally
        if type(payload) is not dict:
            tally.unexpected += 1
            return
        room = str(payload.get("room"))
        sender, n = payload.get("user"), payload.get("n")
        counted = self.rooms.get(room)
        if (
            counted is None
            or type(sender) is not str
            or type(n) is not int
            or type(payload.get("ts")) not in (int, float)
        ):
            tally.unexpected += 1
            return
        stream = self.streams.get((room, sender))
        if stream is None:  # everyone joins before anyone sends: the first counter is 0
            stream = self.streams[room, sender] = RoomSeq(-1)
        last = stream.last
        verdict = stream.accept(n)
        if verdict != "ok":
            tally.note(f"{self.user} {room}: {verdict} {sender}#{n} after #{last}")
        if verdict == "duplicate":
            tally.duplicates += 1
            return
        if verdict == "gap":
            tally.gaps += 1
        elif verdict == "reordered":
            tally.reordered += 1
        counted.last += 1
        if sender == self.user:
            self._echo(payload.get("cid"))
        if self.track_senders:
            self.senders[sender] += 1
        tally.delivered += 1
        tally.sample([payload], now_ms)

    # -- the end ------------------------------------------------------------------------

    def missing(self) -> int:
        """Counters skipped and never received (excluding any not-yet-received tail)."""
        return sum(len(s.missing) + s.lost for s in self.streams.values())

    def last_seqs(self) -> dict[str, int]:
        """The last counter per ``room/sender``: the runner compares users' tails by key."""
        return {f"{room}/{sender}": s.last for (room, sender), s in self.streams.items()}


if HAVE_PICOWS:  # the worker imports this module; without picows only this class is missing
    from loadtests.client import PicowsUser

    class SocketIOUser(PicowsUser):
        """A picows connection speaking Engine.IO v4; ``ready`` once the connect ack arrived."""

        def __init__(self, url: str, verifier: UserVerifier, rooms: list[str]) -> None:
            if not isinstance(verifier, SocketIOVerifier):
                raise TypeError("a Socket.IO user needs a SocketIOVerifier")
            super().__init__(url + ("&" if "?" in url else "?") + QUERY, verifier, rooms)
            self.sio = verifier
            self._early: list[bytes] = []  # replies due before ``connect`` returned
            verifier.expect(rooms)
            verifier.reply = self.send

        async def connect(self) -> None:
            await super().connect()
            early, self._early = self._early, []
            for frame in early:
                self.send(frame)

        def send(self, payload: bytes) -> None:
            # The open packet may arrive with the handshake's answer, before picows hands us the
            # transport: its ``40`` is sent once ``connect`` returns.
            if self.transport is None:
                self._early.append(payload)
            else:
                super().send(payload)

        def _check_ready(self) -> None:
            if self.sio.connected:
                self.ready.set()
            elif self.sio.last_error:  # the connect was refused: give up at once
                self.refused = self.sio.last_error
                self.ready.set()
