"""The presence contract: who is online in which room, and which rooms are active.

Two implementations: ``presence_memory`` (one process) and ``presence_redis`` (every gateway).
A user is online in a room while at least one of her connections, on any gateway, is in it; a
change of that (first connection in, last one out) reaches the room as a ``presence`` event and
the persister as a membership entry. Local connections are counted here, so callers report
every connection's join and leave.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

from gateway.supervisor import Supervised

ROOMS_LISTED = 100  # /api/rooms lists at most this many rooms: the most recently active


class RoomInfo(TypedDict):
    """One row of ``/api/rooms``."""

    room: str
    online: int
    last_seq: int


class PresenceManager(Protocol):
    """What the gateway needs to know and tell about who is online."""

    async def start(self) -> None:
        """Start keeping this gateway's presence alive (if it expires)."""

    async def close(self) -> None:
        """Stop every task."""

    def tasks(self) -> list[Supervised]:
        """The background tasks that must live (for readiness and liveness)."""
        ...

    async def join(self, room: str, user: str) -> None:
        """One more local connection of ``user`` is in ``room``."""

    async def leave(self, room: str, user: str) -> None:
        """One local connection of ``user`` left ``room``."""

    async def members(self, room: str) -> list[str]:
        """The users online in ``room``, sorted."""
        ...

    async def rooms(self) -> list[RoomInfo]:
        """At most ``ROOMS_LISTED`` rooms (on Redis the most recently active), sorted by name."""
        ...
