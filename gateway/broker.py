"""The broker contract: cross-gateway publish/subscribe and room logs.

Two implementations: ``broker_memory`` (in-process) and ``broker_redis``. The broker never
touches sockets; it hands room events to the ``deliver`` callback given to :meth:`start`.
Who is online is the presence manager's business (``gateway/presence.py``), as in centrifuge's
Broker / PresenceManager split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.supervisor import Supervised
from shared.events import Message

# deliver(room, seq, ts, encoded_event): seq and ts are 0 for events that are not messages.
Deliver = Callable[[str, int, int, str], None]


@dataclass(slots=True)
class RoomLog:
    """A room's head and the recent messages the broker still holds after some seq."""

    last_seq: int
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of a publish: the message as the room has it."""

    message: Message
    duplicate: bool  # a resend with a known cid: nothing new was published


class Publisher(Protocol):
    """Assigns a room's next seq and hands the message on (one of ``gateway/publisher*.py``)."""

    async def publish(self, room: str, user: str, text: str, cid: str | None) -> Published:
        """Assign the next seq, log, queue for storage and fan out, atomically."""
        ...

    async def close(self) -> None:
        """Release what publishing holds (connections, tasks)."""


class Broker(Publisher, Protocol):
    """What the gateway needs from a broker."""

    async def start(self, deliver: Deliver) -> None:
        """Begin handing room events to ``deliver``."""

    async def close(self) -> None:
        """Stop every task and close every connection."""

    async def ping(self) -> None:
        """Raise :class:`~shared.errors.Unavailable` if the broker cannot be reached."""

    def healthy(self) -> bool:
        """Whether live events can flow right now (the subscriber is connected)."""
        ...

    def tasks(self) -> list[Supervised]:
        """The background tasks that must live (for readiness and liveness)."""
        ...

    async def subscribe(self, room: str) -> None:
        """Receive the room's events; returns once they flow."""

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the room's events."""

    async def recent(self, room: str, since: int | None, limit: int) -> RoomLog:
        """Messages after ``since`` (or the latest ``limit`` when ``since`` is None)."""
        ...

    async def older(self, room: str, before: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` logged messages with ``seq < before`` (newest last)."""
        ...
