"""Per fault: how long until messages were acknowledged again, what was refused meanwhile, and
how long the clients it dropped took to be back. Pure."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from bench.chaos.records import Disconnect, FaultRecord, SendRecord


@dataclass(frozen=True)
class Recovery:
    fault: FaultRecord
    first_ack_s: float | None  # fault → the first echo of a send made after it
    refused: int  # sends made from this fault to the next that were refused
    unanswered: int  # ... that got no reply
    dropped: int  # client sockets that dropped in that window
    back_s: float | None  # fault → the last of those clients joined again (None: one never did)

    @property
    def down_s(self) -> float | None:
        """The fault → back and ready (None: it did not come back)."""
        f = self.fault
        return None if f.restored_at is None else f.restored_at - f.at


def recoveries(
    faults: list[FaultRecord], sends: list[SendRecord], disconnects: list[Disconnect]
) -> list[Recovery]:
    """One :class:`Recovery` per fault, in order."""
    by_time = sorted(sends, key=lambda s: s.sent_at)
    starts = [s.sent_at for s in by_time]
    out = []
    for i, f in enumerate(faults):
        end = faults[i + 1].at if i + 1 < len(faults) else float("inf")
        window = by_time[bisect.bisect_left(starts, f.at) : bisect.bisect_left(starts, end)]
        acks = [
            s.answered_at for s in by_time[bisect.bisect_left(starts, f.at) :]
            if s.outcome == "acked" and s.answered_at is not None
        ]  # fmt: skip
        drops = [d for d in disconnects if f.at <= d.at < end]
        back = [d.back_at for d in drops]
        out.append(
            Recovery(
                fault=f,
                first_ack_s=min(acks) - f.at if acks else None,
                refused=sum(1 for s in window if s.outcome == "refused"),
                unanswered=sum(1 for s in window if s.outcome == "pending"),
                dropped=len(drops),
                back_s=(
                    max(b for b in back if b is not None) - f.at
                    if drops and all(b is not None for b in back)
                    else None
                ),
            )
        )
    return out
