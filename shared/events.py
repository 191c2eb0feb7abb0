"""The wire schema: client commands (decoded and validated) and server events (encoded once).

Frames are JSON text. Server frames carry one event object or, when several are pending for a
client, one JSON array of them (see gateway/batch.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from shared import errors
from shared.errors import ProtocolError

ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_CID_CHARS = 64
MAX_USER_CHARS = 32
MAX_HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    since: int | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    text: str
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    room: str
    before: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Command = Join | Leave | Send | History | Ping


def now_ms() -> int:
    """Server time in ms since the epoch, as carried by ``ts``."""
    return time.time_ns() // 1_000_000


def valid_room(room: object) -> bool:
    """True for a well-formed room name: all of it matches ``ROOM_RE`` (``fullmatch``: with
    ``match`` the ``$`` also accepts a trailing newline, ``"lobby\\n"``).

    ``:`` is allowed (the Redis keys are read by shape, shared/keys.py); ``#`` is not, and
    must never be: it ends the room in a ``presence_user`` key (docs/security.md)."""
    return isinstance(room, str) and ROOM_RE.fullmatch(room) is not None


def valid_user(name: object) -> bool:
    """1-32 printable characters, not only white space."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_USER_CHARS
        and name.isprintable()
        and bool(name.strip())
    )


def _is_int(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _room(data: dict[str, Any]) -> str:
    room = data.get("room")
    if room is None:
        raise ProtocolError(errors.BAD_REQUEST, "missing field: room")
    if not valid_room(room):
        raise ProtocolError(
            errors.INVALID_ROOM, "room names match [A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
        )
    return str(room)


def _optional_int(data: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ProtocolError(errors.BAD_REQUEST, f"{name} must be an integer {bound}")
    return int(value)


def parse_command(frame: str | bytes, max_text_chars: int) -> Command:
    """Decode and validate one client frame, or raise :class:`ProtocolError`."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ProtocolError(errors.BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(errors.BAD_REQUEST, "frame must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(errors.BAD_REQUEST, "missing field: type")
    cid = data.get("cid")
    if cid is not None and (not isinstance(cid, str) or not 1 <= len(cid) <= MAX_CID_CHARS):
        raise ProtocolError(errors.BAD_REQUEST, f"cid must be a string of 1..{MAX_CID_CHARS}")
    try:
        if kind == "send":
            room = _room(data)
            text = data.get("text")
            if not isinstance(text, str):
                raise ProtocolError(errors.BAD_REQUEST, "text must be a string")
            if len(text) > max_text_chars:
                raise ProtocolError(errors.TOO_LARGE, f"text is longer than {max_text_chars}")
            if not text.strip():
                raise ProtocolError(errors.BAD_REQUEST, "text is empty")
            return Send(room, text, cid)
        if kind == "join":
            return Join(_room(data), _optional_int(data, "since", 0))
        if kind == "leave":
            return Leave(_room(data))
        if kind == "history":
            return History(
                _room(data),
                _optional_int(data, "before", 1),
                _optional_int(data, "limit", 1, MAX_HISTORY_LIMIT),
            )
        if kind == "ping":
            return Ping()
    except ProtocolError as exc:
        exc.cid = cid
        if exc.room is None and valid_room(data.get("room")):
            exc.room = data["room"]
        raise
    raise ProtocolError(errors.UNKNOWN_TYPE, f"unknown type: {kind[:32]!r}", cid=cid)


# -- server events -----------------------------------------------------------------------------


class Message(TypedDict):
    """A chat message: what rooms carry, logs keep and the store holds."""

    type: Literal["message"]
    room: str
    seq: int
    user: str
    text: str
    ts: int  # server time, ms since the epoch
    cid: NotRequired[str]  # the sender's idempotency key


class ErrorEvent(TypedDict):
    """A refused command (docs/protocol.md, "Errors")."""

    type: Literal["error"]
    code: str
    detail: str
    cid: NotRequired[str]
    room: NotRequired[str]


class PresenceEvent(TypedDict):
    """Users who came online in a room, or left it."""

    type: Literal["presence"]
    room: str
    joined: list[str]
    left: list[str]


class Joined(TypedDict):
    """The answer to ``join``: the room's head, members and the messages to catch up on."""

    type: Literal["joined"]
    room: str
    seq: int
    members: list[str]
    messages: list[Message]
    recovered: bool


class Left(TypedDict):
    """The answer to ``leave``."""

    type: Literal["left"]
    room: str


class HistoryPage(TypedDict):
    """The answer to ``history``: older messages, oldest first."""

    type: Literal["history"]
    room: str
    messages: list[Message]
    more: bool


class Membership(TypedDict):
    """A persist-stream entry: a user's presence in a room began (join) or ended (leave)."""

    type: Literal["join", "leave"]
    room: str
    user: str
    ts: int


class Hello(TypedDict):
    """The first event on a connection: who the client is and its limits."""

    type: Literal["hello"]
    user: str
    gateway: str
    auth: str  # "anonymous" | "token"
    limits: dict[str, float | int]


ServerEvent = Hello | Message | ErrorEvent | PresenceEvent | Joined | Left | HistoryPage
PONG = '{"type":"pong"}'  # the answer to ``ping``, encoded once


def encode(event: ServerEvent | Membership) -> str:
    """Encode one server event as JSON text."""
    return orjson.dumps(event).decode()


def message(room: str, seq: int, user: str, text: str, ts: int, cid: str | None = None) -> Message:
    """A ``message`` event."""
    event: Message = {
        "type": "message",
        "room": room,
        "seq": seq,
        "user": user,
        "text": text,
        "ts": ts,
    }
    if cid is not None:
        event["cid"] = cid
    return event


def error(code: str, detail: str, *, cid: str | None = None, room: str | None = None) -> ErrorEvent:
    """An ``error`` event."""
    event: ErrorEvent = {"type": "error", "code": code, "detail": detail}
    if cid is not None:
        event["cid"] = cid
    if room is not None:
        event["room"] = room
    return event


def presence(room: str, joined: list[str], left: list[str]) -> PresenceEvent:
    """A ``presence`` event."""
    return {"type": "presence", "room": room, "joined": joined, "left": left}
