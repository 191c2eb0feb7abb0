"""Error codes, close codes and the exceptions that carry them (docs/protocol.md)."""

from __future__ import annotations

import secrets

# Close codes.
NORMAL = 1000
GOING_AWAY = 1001  # gateway shutting down: reconnect elsewhere
POLICY_VIOLATION = 1008  # bad origin or user name
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013  # gateway at capacity, or too many new connections from one address
UNAUTHORIZED = 4001
FORBIDDEN = 4003
SLOW_CONSUMER = 4008
RATE_LIMIT_EXCEEDED = 4029

# Error codes of ``error`` events.
BAD_REQUEST = "bad_request"
UNKNOWN_TYPE = "unknown_type"
INVALID_ROOM = "invalid_room"
NOT_JOINED = "not_joined"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
FORBIDDEN_ROOM = "forbidden"
TOO_MANY_ROOMS = "too_many_rooms"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"
UNAUTHENTICATED = "unauthorized"  # HTTP API only (401): no valid token in token mode


class ProtocolError(Exception):
    """A refused request. The connection stays open; the client gets an ``error`` event."""

    def __init__(
        self, code: str, detail: str, *, cid: str | None = None, room: str | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.cid = cid
        self.room = room


class Refused(Exception):
    """A connection is refused before ``hello`` (origin, capacity, address rate, identity):
    ``code`` is the WebSocket close code, ``reason`` the close reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Unavailable(Exception):
    """The broker or the store cannot be reached right now; the client may retry.

    Its message is for the log only (it may hold a driver's error, SQL, host names): clients get
    :attr:`public`, which names the :attr:`ref` the log line carries too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.ref = secrets.token_hex(6)

    @property
    def public(self) -> str:
        """What a client is told."""
        return f"temporarily unavailable, retry (ref {self.ref})"
