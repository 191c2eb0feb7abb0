"""What the run records: each send and its outcome, what each client saw in each room, each
fault, and the rows of the database. Plain data, filled by ``traffic`` and ``faults``, read by
``verify``, ``recovery`` and ``report``. Times are ``time.monotonic()`` seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Outcome = Literal["pending", "acked", "refused"]


@dataclass
class SendRecord:
    """One ``send``: acked when its echo came (with a seq), refused on an ``error`` with its
    cid, otherwise unanswered (still ``pending`` when the run ended, or its socket dropped)."""

    user: str
    room: str
    cid: str
    text: str
    sent_at: float
    outcome: Outcome = "pending"
    seq: int | None = None
    code: str = ""  # the error code of a refusal
    answered_at: float | None = None


class Delivery(NamedTuple):
    """A message as one client received it (live, or replayed by a ``joined``)."""

    seq: int
    text: str
    user: str
    at: float = 0.0  # when it was received
    conn: int = 0  # the client's connection it came on (1, 2, ...)
    replay: bool = False  # in a ``joined`` (recovered or recent), not live


@dataclass
class ClientLog:
    """One client's view of one room, over all its connections.

    ``baseline`` is the room's seq of the first ``joined``: the client is a member for every
    message after it. ``deliveries`` are in the order received, across reconnects.
    """

    user: str
    room: str
    baseline: int | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    joins: int = 0
    unrecovered: int = 0  # rejoins answered with ``recovered: false``
    high: int | None = None  # the highest seq seen, else the baseline: the next ``since``

    def joined(self, seq: int) -> None:
        """A ``joined`` said the room is at ``seq``; the first one sets the baseline."""
        self.joins += 1
        if self.baseline is None:
            self.baseline = seq
            self.high = seq if self.high is None else max(self.high, seq)

    def receive(
        self, seq: int, text: str, user: str, at: float = 0.0, conn: int = 0, replay: bool = False
    ) -> None:
        self.deliveries.append(Delivery(seq, text, user, at, conn, replay))
        self.high = seq if self.high is None else max(self.high, seq)


@dataclass
class Disconnect:
    """A client's socket dropped at ``at``; ``back_at`` is when its rooms were joined again."""

    user: str
    at: float
    gateway: str
    back_at: float | None = None


@dataclass
class FaultRecord:
    """One fault: what was hit, when (``at``: the kill or signal), and when it was back."""

    kind: str
    target: str
    planned_at: float  # seconds after the traffic started, as scheduled
    at: float  # monotonic time of the kill (or signal)
    wall: str  # the same moment, local time
    restored_at: float | None = None  # back and ready (None: it did not come back)
    detail: str = ""


class Row(NamedTuple):
    """A row of ``message`` (or of ``message_conflict``)."""

    room: str
    seq: int
    text: str
