"""The verdict, from what the clients logged and what the database holds. Pure: no I/O.

- **acknowledged**: the sender got its echo, with a seq. Each must be stored once in
  ``message`` (same room, seq, text) and delivered to every member of its room (every client
  whose first ``joined`` came before it), in order, once: otherwise it is **lost**.
- **refused** (an ``error`` with the cid) and **unanswered** (no reply before the socket dropped
  or the run ended) may or may not exist; where one does, it must be consistent like any other.
- **duplicated**: one seq delivered twice to a client, or one message (its text: every text is
  unique) under two seqs anywhere.
- **reused seq**: one (room, seq) with two different texts anywhere (echoes, deliveries, rows,
  ``message_conflict``).
- **reordered**: a client received a seq lower than one it already had (and not a repeat).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bench.chaos.records import ClientLog, Delivery, Row, SendRecord

IssueKind = Literal["lost", "duplicated", "reused", "reordered"]
EXAMPLES = 20  # issues kept with their evidence, per kind


@dataclass(frozen=True)
class Issue:
    """One failure with its evidence, and when it happened (where known)."""

    kind: IssueKind
    room: str
    seq: int
    detail: str
    at: float | None = None
    when: str = "sent"  # what ``at`` is: "sent", or "received" for a delivery


@dataclass
class Verdict:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    unanswered: int = 0
    expected_deliveries: int = 0  # (member, acknowledged message) pairs
    delivered: int = 0  # of those, received
    received: int = 0  # every message event and replayed message the clients got
    stored: int = 0  # rows of ``message`` in the run's rooms
    conflicts: int = 0  # rows of ``message_conflict``
    lost: int = 0  # acknowledged messages missing from the store or from a member
    lost_rows: int = 0
    lost_deliveries: int = 0  # (member, message) pairs
    duplicated: int = 0
    reused: int = 0
    reordered: int = 0
    unacked_existing: int = 0  # refused or unanswered, yet stored or delivered
    refusals: dict[str, int] = field(default_factory=dict)  # error code → count
    issues: list[Issue] = field(default_factory=list)  # the first EXAMPLES of each kind

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.reused or self.reordered)

    def note(self, issue: Issue) -> None:
        if sum(1 for i in self.issues if i.kind == issue.kind) < EXAMPLES:
            self.issues.append(issue)


Key = tuple[str, int]  # (room, seq)


def _claims(
    sends: Sequence[SendRecord],
    logs: Sequence[ClientLog],
    rows: Sequence[Row],
    conflicts: Sequence[Row],
) -> dict[Key, dict[str, set[str]]]:
    """(room, seq) → text → who says so ("echo to u1", "u2", "message", "message_conflict")."""
    claims: dict[Key, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for s in sends:
        if s.outcome == "acked" and s.seq is not None:
            claims[(s.room, s.seq)][s.text].add(f"echo to {s.user}")
    for log in logs:
        for d in log.deliveries:
            claims[(log.room, d.seq)][d.text].add(log.user)
    for table, table_rows in (("message", rows), ("message_conflict", conflicts)):
        for r in table_rows:
            claims[(r.room, r.seq)][r.text].add(table)
    return claims


def _who(sources: Iterable[str]) -> str:
    names = sorted(sources)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _reused(v: Verdict, claims: dict[Key, dict[str, set[str]]], sent_at: dict[str, float]) -> None:
    for (room, seq), texts in sorted(claims.items()):
        if len(texts) > 1:
            v.reused += 1
            said = "; ".join(f"{t!r} ({_who(src)})" for t, src in sorted(texts.items()))
            known = [sent_at[t] for t in texts if t in sent_at]
            v.note(Issue("reused", room, seq, said, min(known) if known else None))


def _duplicated_texts(
    v: Verdict, claims: dict[Key, dict[str, set[str]]], sent_at: dict[str, float]
) -> None:
    where: dict[str, set[Key]] = defaultdict(set)
    for key, texts in claims.items():
        for text in texts:
            where[text].add(key)
    for text, keys in sorted(where.items()):
        if len(keys) > 1:
            v.duplicated += len(keys) - 1
            room, seq = min(keys)
            at = ", ".join(f"{r} seq {s}" for r, s in sorted(keys))
            v.note(Issue("duplicated", room, seq, f"{text!r} under {at}", sent_at.get(text)))


def _how(d: Delivery) -> str:
    """How a client got a message: what, live or replayed, on which of its connections."""
    return f"{d.text!r} of {d.user} {'replayed' if d.replay else 'live'} on connection {d.conn}"


def _around(log: ClientLog, i: int, before: int = 8, after: int = 4) -> str:
    """The seqs the client received around its ``i``-th delivery, that one in brackets."""
    start = max(0, i - before)
    seqs = [
        f"[{d.seq}]" if j == i else str(d.seq)
        for j, d in enumerate(log.deliveries[start : i + after + 1], start)
    ]
    return f"; received in this order: {' '.join(seqs)}"


def _streams(v: Verdict, logs: Sequence[ClientLog]) -> None:
    """Per client and room: every seq once, strictly increasing."""
    for log in logs:
        seen: dict[int, Delivery] = {}
        high: Delivery | None = None
        for i, d in enumerate(log.deliveries):
            v.received += 1
            if d.seq in seen:
                v.duplicated += 1
                why = f"delivered twice to {log.user}: {_how(seen[d.seq])}, then {_how(d)}"
                why += _around(log, i)
                v.note(Issue("duplicated", log.room, d.seq, why, d.at or None, "received"))
            elif high is not None and d.seq < high.seq:
                v.reordered += 1
                why = f"{log.user} got it ({_how(d)}) after seq {high.seq} ({_how(high)})"
                why += _around(log, i)
                v.note(Issue("reordered", log.room, d.seq, why, d.at or None, "received"))
            seen.setdefault(d.seq, d)
            if high is None or d.seq > high.seq:
                high = d


def _rows(v: Verdict, rows: Sequence[Row]) -> None:
    counted: dict[Key, int] = defaultdict(int)
    for r in rows:
        counted[(r.room, r.seq)] += 1
    for (room, seq), n in sorted(counted.items()):
        if n > 1:
            v.duplicated += n - 1
            v.note(Issue("duplicated", room, seq, f"{n} rows in message"))


def _lost(
    v: Verdict, acked: list[SendRecord], logs: Sequence[ClientLog], rows: Sequence[Row]
) -> None:
    stored = set(rows)
    members: dict[str, list[tuple[ClientLog, set[int]]]] = defaultdict(list)
    for log in logs:
        if log.baseline is not None:
            members[log.room].append((log, {d.seq for d in log.deliveries}))
    for s in acked:
        assert s.seq is not None
        missing_row = Row(s.room, s.seq, s.text) not in stored
        missed_by = []
        for log, seqs in members[s.room]:
            assert log.baseline is not None
            if s.seq > log.baseline:
                v.expected_deliveries += 1
                if s.seq in seqs:
                    v.delivered += 1
                else:
                    missed_by.append(log.user)
        v.lost_rows += missing_row
        v.lost_deliveries += len(missed_by)
        if missing_row or missed_by:
            v.lost += 1
            why = []
            if missing_row:
                why.append("not stored")
            if missed_by:
                why.append(f"not delivered to {_who(missed_by)}")
            v.note(
                Issue("lost", s.room, s.seq, f"{s.text!r} of {s.user}: {'; '.join(why)}", s.sent_at)
            )


def verify(
    sends: Sequence[SendRecord],
    logs: Sequence[ClientLog],
    rows: Sequence[Row],
    conflicts: Sequence[Row] = (),
) -> Verdict:
    """The counts and the first issues of each kind (see the module's docstring)."""
    v = Verdict(sent=len(sends), stored=len(rows), conflicts=len(conflicts))
    acked = [s for s in sends if s.outcome == "acked" and s.seq is not None]
    v.acked = len(acked)
    refusals: dict[str, int] = defaultdict(int)
    for s in sends:
        if s.outcome == "refused":
            refusals[s.code or "?"] += 1
    v.refusals = dict(sorted(refusals.items()))
    v.refused = sum(refusals.values())
    v.unanswered = v.sent - v.acked - v.refused
    claims = _claims(sends, logs, rows, conflicts)
    sent_at = {s.text: s.sent_at for s in sends}
    _reused(v, claims, sent_at)
    _duplicated_texts(v, claims, sent_at)
    _streams(v, logs)
    _rows(v, rows)
    _lost(v, acked, logs, rows)
    exists = {t for texts in claims.values() for t in texts}
    v.unacked_existing = sum(1 for s in sends if s.outcome != "acked" and s.text in exists)
    return v
