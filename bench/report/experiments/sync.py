"""Experiment 2: sync save (lock + commit before publishing) at several offered rates."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import table
from bench.report.results import Results, Row, Run, delivered, of_experiment, verified

HEADER = (
    "run",
    "offered/s",
    "sent/s",
    "accepted/s",
    "deliveries/s",
    "p99 ms",
    "unavailable",
    "verified",
)


def _runs(data: Results) -> list[Run]:
    return sorted(of_experiment(data, "2"), key=lambda r: r["offered_rate"])


def _at_rate(r: Run) -> str:
    return (
        f"at {r['offered_rate']:g} msgs/s offered: {r.get('echoed_per_s', 0):,} accepted/s, "
        f"{r['deliveries_per_s']:,} deliveries/s, p99 {r['p99_ms']} ms, "
        f"{r.get('unavailable_errors', 0):,} unavailable {verified(r)}"
    )


class Sync(Experiment):
    key = "2"
    charted = True

    def rows(self, data: Results) -> list[Row]:
        u = data["settings"]["users"]
        syncs = " / ".join(_at_rate(r) for r in _runs(data)) or "not run"
        return [
            (
                f"sync → async save, 3 gateways, {u} users",
                "139,813 → 163,022 msgs/s",
                f"{syncs} → {delivered(data, f'e1-3gw-{u}')}",
                "",
            )
        ]

    def notes(self, data: Results) -> list[str]:
        syncs = _runs(data)
        if not syncs:
            return []
        best = max(r.get("echoed_per_s", 0) for r in syncs)
        rows = [
            (
                r["label"],
                f"{r['offered_rate']:g}",
                f"{r['sent_per_s']:,}",
                f"{r.get('echoed_per_s', 0):,}",
                f"{r['deliveries_per_s']:,}",
                r["p99_ms"],
                f"{r.get('unavailable_errors', 0):,}",
                verified(r),
            )
            for r in syncs
        ]
        return [
            "## Experiment 2: reading the sync numbers",
            "",
            "In sync mode every send takes the room's lock and commits to MariaDB before it is "
            "published, so one room takes one message at a time (a commit alone is ~1.2 ms, "
            "see `make bench-persister`). Offered more than the room takes, sends queue behind "
            "the lock; a send refused while waiting is answered `error unavailable` (counted "
            "below), and sends still queued when the run ends are missing echoes, so the run is "
            "marked ✗: the design's limit, reported as measured. "
            f"Best accepted rate measured here: {best:,} "
            "msgs/s, far below 1 / commit time, so the commit is not the only cost per send. "
            "*accepted/s* is echoes received per second (messages the room really took).",
            "",
            table(rows, HEADER),
            "",
        ]
