"""What a virtual user checks in every frame it receives (pure: no I/O, unit-tested).

A frame is one JSON event or a JSON array of events. For each joined room a user expects
``seq`` to go up by exactly one per message (counting from the ``seq`` in ``joined``); a jump is
a gap (the skipped seqs are remembered: one that turns up later is *reordered*, one never seen is
*lost*), a seq seen before is a *duplicate*. Every ``send`` carries a ``cid``; the echo with that
``cid`` must come back. Latency is ``receipt time - ts`` for every k-th delivered message.

The hot path (a frame of messages of the one room a user is in, in order) does the checks with
C-level list operations; anything unusual falls back to a per-event loop.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter
from typing import Any

import orjson

from loadtests.stats import LatencyHistogram

SEQ = itemgetter("seq")
USER = itemgetter("user")
MAX_REMEMBERED_GAP = 100_000  # a larger jump is counted as lost at once


def sent_at(event: Any) -> float:
    """When the message was sent: the client's clock at the head of the text (the load
    generator's ``send`` puts it there, as the Socket.IO peers carry it in their payload), so
    latency is end to end, as for the peers; else the server's ``ts``."""
    text = event.get("text")
    if type(text) is str:
        head = text.partition(" ")[0]
        if head[:1].isdigit():
            try:
                return float(head)
            except ValueError:
                pass
    return float(event["ts"])


def unpack(frame: Any) -> list[Any]:
    """The events of a decoded frame: an array is unpacked, a single object becomes ``[obj]``."""
    return frame if type(frame) is list else [frame]


class Tally:
    """Counters shared by all users of one worker (summed across workers by the runner)."""

    def __init__(self, sample_every: int = 1) -> None:
        self.sample_every = max(1, sample_every)
        self.sample_phase = 0  # index, in the delivery stream, of the next latency sample
        self.latency = LatencyHistogram()
        self.frames = 0
        self.bytes = 0
        self.delivered = 0  # message events, each counted once per recipient
        self.other_events = 0  # hello, joined, presence, pong, ...
        self.sent = 0
        self.echoed = 0
        self.gaps = 0  # times a seq jumped
        self.reordered = 0  # a skipped seq that arrived later
        self.duplicates = 0
        self.unexpected = 0  # messages of a room the user is not in, malformed events
        self.errors: Counter[str] = Counter()  # error events by code
        self.closes: Counter[int] = Counter()  # close codes received (or 1006: no close frame)
        self.anomalies: list[str] = []  # the first few, for the report

    def note(self, text: str) -> None:
        if len(self.anomalies) < 20:
            self.anomalies.append(text)

    COUNTERS = (
        "frames", "bytes", "delivered", "other_events", "sent", "echoed",
        "gaps", "reordered", "duplicates", "unexpected",
    )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """The counters so far plus the latency samples since the last snapshot."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.COUNTERS}
        out["errors"] = dict(self.errors)
        out["closes"] = dict(self.closes)
        out["anomalies"] = list(self.anomalies)
        out["latency"] = self.latency.take()
        return out

    def sample(self, events: list[Any], now_ms: float) -> None:
        """Record the latency of every ``sample_every``-th message of the stream."""
        n = len(events)
        phase = self.sample_phase
        if phase >= n:
            self.sample_phase = phase - n
            return
        k = self.sample_every
        picked = events[phase::k]
        add = self.latency.add
        for event in picked:
            add(now_ms - sent_at(event))
        self.sample_phase = phase + k * len(picked) - n


class RoomSeq:
    """One room's stream as one user sees it."""

    __slots__ = ("last", "lost", "missing")

    def __init__(self, last: int) -> None:
        self.last = last
        self.missing: set[int] = set()
        self.lost = 0  # seqs skipped by a jump too large to remember one by one

    def accept(self, seq: int) -> str:
        """Classify ``seq``: ``ok``, ``gap`` (jumped ahead), ``reordered`` or ``duplicate``."""
        last = self.last
        if seq == last + 1:
            self.last = seq
            return "ok"
        if seq > last:
            if seq - last - 1 > MAX_REMEMBERED_GAP:
                self.lost += seq - last - 1
            else:
                self.missing.update(range(last + 1, seq))
            self.last = seq
            return "gap"
        if seq in self.missing:
            self.missing.discard(seq)
            return "reordered"
        return "duplicate"


class UserVerifier:
    """One virtual user's view: its rooms' streams, its unanswered sends, what it saw."""

    def __init__(self, user: str, tally: Tally, track_senders: bool = False) -> None:
        self.user = user
        self.tally = tally
        self.rooms: dict[str, RoomSeq] = {}
        self.pending: set[str] = set()  # cids sent and not echoed yet
        self.sent_count = 0
        self.gateway = ""  # from hello
        self.last_error = ""  # code of the last error event
        self.track_senders = track_senders
        self.senders: Counter[str] = Counter()  # messages received per sender (if tracked)
        self._fast: RoomSeq | None = None  # set while the user is in exactly one room

    # -- sending ------------------------------------------------------------------------

    def sent(self, cid: str) -> None:
        self.pending.add(cid)
        self.sent_count += 1
        self.tally.sent += 1

    # -- receiving ----------------------------------------------------------------------

    def on_frame(self, data: bytes | bytearray | memoryview | str, now_ms: float) -> None:
        """Account for and check one received text frame (``now_ms``: receipt, epoch ms)."""
        tally = self.tally
        tally.frames += 1
        tally.bytes += len(data)
        try:
            events = unpack(orjson.loads(data))
        except orjson.JSONDecodeError:
            tally.unexpected += 1
            return
        if not events:
            return
        fast = self._fast
        if fast is not None and not self.track_senders:
            try:
                seqs = list(map(SEQ, events))
            except (KeyError, TypeError):
                seqs = []
            n = len(seqs)
            last = fast.last
            if (
                n
                and seqs[0] == last + 1
                and seqs[-1] == last + n
                and (n < 3 or seqs == list(range(last + 1, last + n + 1)))
            ):
                # Consecutive seqs: only messages carry a seq once the user has joined.
                fast.last = last + n
                tally.delivered += n
                tally.sample(events, now_ms)
                if self.pending and self.user in map(USER, events):
                    self._echoes(events)
                return
        self._slow(events, now_ms)

    def _echoes(self, events: list[Any]) -> None:
        user = self.user
        for event in events:
            if event.get("user") == user:
                self._echo(event.get("cid"))

    def _echo(self, cid: Any) -> None:
        if cid in self.pending:
            self.pending.discard(cid)
            self.tally.echoed += 1

    def _slow(self, events: list[Any], now_ms: float) -> None:
        tally = self.tally
        messages: list[Any] = []
        for event in events:
            kind = event.get("type") if type(event) is dict else None
            if kind == "message":
                if self._message(event):
                    messages.append(event)
            else:
                tally.other_events += 1
                if kind == "joined":
                    self._joined(event)
                elif kind == "hello":
                    self.gateway = str(event.get("gateway", ""))
                elif kind == "error":
                    self.last_error = str(event.get("code"))
                    tally.errors[self.last_error] += 1
                    self.pending.discard(event.get("cid"))  # refused: counted as an error
                elif kind is None:
                    tally.unexpected += 1
        if messages:
            tally.delivered += len(messages)
            tally.sample(messages, now_ms)

    def _message(self, event: dict[str, Any]) -> bool:
        """Check one message event; False if it is not a new delivery."""
        tally = self.tally
        stream = self.rooms.get(event.get("room"))  # type: ignore[arg-type]
        seq = event.get("seq")
        if stream is None or type(seq) is not int or "ts" not in event:
            tally.unexpected += 1
            return False
        last = stream.last
        verdict = stream.accept(seq)
        if verdict != "ok":
            tally.note(f"{self.user} {event.get('room')}: {verdict} seq {seq} after {last}")
        if verdict == "duplicate":
            tally.duplicates += 1
            return False
        if verdict == "gap":
            tally.gaps += 1
        elif verdict == "reordered":
            tally.reordered += 1
        sender = event.get("user")
        if sender == self.user:
            self._echo(event.get("cid"))
        if self.track_senders:
            self.senders[str(sender)] += 1
        return True

    def _joined(self, event: dict[str, Any]) -> None:
        room = event.get("room")
        seq = event.get("seq")
        if type(room) is not str or type(seq) is not int:
            self.tally.unexpected += 1
            return
        stream = self.rooms.get(room)
        if stream is None:
            self.rooms[room] = RoomSeq(seq)
        else:  # a re-join: continue from what the server says is the latest
            stream.last = max(stream.last, seq)
        self._fast = next(iter(self.rooms.values())) if len(self.rooms) == 1 else None

    # -- the end ------------------------------------------------------------------------

    def missing(self) -> int:
        """Seqs skipped and never received (excluding any not-yet-received tail)."""
        return sum(len(s.missing) + s.lost for s in self.rooms.values())

    def last_seqs(self) -> dict[str, int]:
        return {room: s.last for room, s in self.rooms.items()}
