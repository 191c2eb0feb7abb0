"""A batch: the encoded events bound for one client (or one room) in one flush.

A room's events of one flush window form ONE batch, shared by every member: its frame text is
built once, and a member in one room is sent exactly that string.
"""

from __future__ import annotations

import orjson


class Batch:
    """Encoded events, in order, with the range of message seqs they carry."""

    __slots__ = ("_frame", "chars", "events", "first", "last", "room")

    def __init__(self, room: str | None = None) -> None:
        self.room = room
        self.events: list[str] = []
        self.first = 0  # lowest message seq in the batch (0: no messages)
        self.last = 0  # highest message seq
        self.chars = 0
        self._frame: str | None = None

    @classmethod
    def of(cls, data: str, room: str | None = None, seq: int = 0) -> Batch:
        """A batch of one event."""
        batch = cls(room)
        batch.add(seq, data)
        return batch

    def add(self, seq: int, data: str) -> None:
        """Append one encoded event (``seq`` 0 for events that are not messages)."""
        self.events.append(data)
        self.chars += len(data)
        if seq:
            if not self.first:
                self.first = seq
            self.last = seq
        self._frame = None

    def __len__(self) -> int:
        return len(self.events)

    @property
    def frame(self) -> str:
        """The batch as one frame: the event itself, or a JSON array of them (built once)."""
        if self._frame is None:
            events = self.events
            self._frame = events[0] if len(events) == 1 else "[" + ",".join(events) + "]"
        return self._frame

    def newer_than(self, last: int) -> Batch:
        """This batch without the messages whose seq is ``<= last`` (other events stay)."""
        kept = Batch(self.room)
        for data in self.events:
            seq = _seq_of(data)
            if not seq or seq > last:
                kept.add(seq, data)
        return kept


def frame_of(batches: list[Batch]) -> str:
    """One frame for several batches (their events merged into one JSON array)."""
    if len(batches) == 1:
        return batches[0].frame
    return "[" + ",".join(e for b in batches for e in b.events) + "]"


def _seq_of(data: str) -> int:
    # Only on the rare partial-overlap path (a join racing live traffic): decoding is fine here.
    event = orjson.loads(data)
    return int(event.get("seq", 0)) if event.get("type") == "message" else 0
