"""The broker contract: cross-gateway publish/subscribe, room logs and presence.

Two implementations: ``broker_memory`` (in-process) and ``broker_redis``. The broker never
touches sockets; it hands room events to the ``deliver`` callback given to :meth:`start`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# deliver(room, seq, ts, encoded_event): seq and ts are 0 for events that are not messages.
Deliver = Callable[[str, int, int, str], None]


@dataclass(slots=True)
class RoomLog:
    """A room's head and the recent messages the broker still holds after some seq."""

    last_seq: int
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Published:
    message: dict[str, Any]
    duplicate: bool  # a resend with a known cid: nothing new was published


class Broker(Protocol):
    """What the gateway needs from a broker."""

    async def start(self, deliver: Deliver) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    def healthy(self) -> bool:
        """Whether live events can flow right now (the subscriber is connected)."""

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        """Assign the next seq, log, queue for storage and fan out, atomically."""

    async def subscribe(self, room: str) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...

    async def recent(self, room: str, since: int | None, limit: int) -> RoomLog:
        """Messages after ``since`` (or the latest ``limit`` when ``since`` is None)."""

    async def older(self, room: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` logged messages with ``seq < before`` (newest last)."""

    async def presence_join(self, room: str, user: str) -> None: ...

    async def presence_leave(self, room: str, user: str) -> None: ...

    async def members(self, room: str) -> list[str]: ...

    async def rooms(self) -> list[dict[str, Any]]:
        """``[{"room", "online", "last_seq"}]`` for every known room."""
