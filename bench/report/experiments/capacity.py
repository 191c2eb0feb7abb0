"""Experiment S: the persister's capacity (``bench.persister``, ``make bench-persister``).

Rows/s into MariaDB, on private Redis and MariaDB servers: the persister draining a backlog
already in the persist streams (batch 200 and 1000; 2 and 3 replicas at batch 200), and one
insert + commit per message (what ``CHAT_PERSIST_MODE=sync`` does per send).
"""

from __future__ import annotations

from typing import Any

from bench.report.experiments.base import Experiment
from bench.report.markdown import table, verdict
from bench.report.results import Results, Row

TARGET_ROWS = 30_000  # rows/s: one persister at batch 200
# Below this many rows the drain takes a few of bench.persister's 20 ms polls, and replicas'
# start-up dominates: 5,000 rows measured 9 M rows/s with 2 replicas on a 2-core box.
FEW_ROWS = 20_000


def _target_mode(modes: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next(
        (m for m in modes if m["kind"] == "async" and m["batch"] == 200 and m["replicas"] == 1),
        None,
    )


class Capacity(Experiment):
    key = "S"

    def rows(self, data: Results) -> list[Row]:
        c = data["facts"].get("persister_capacity")
        if not c:
            return []
        target = _target_mode(c["modes"])
        few = f" (only {c['rows']:,} rows drained: unreliable)" if c["rows"] < FEW_ROWS else ""
        return [
            (
                f"S. persister capacity (`make bench-persister`: {c['rows']:,} rows drained, "
                f"{c['sync_rows']:,} committed one by one)",
                "-",
                "; ".join(f"{m['mode']}: {m['rows_per_s']:,} rows/s" for m in c["modes"]) + few,
                "batch 200, one persister: "
                + (
                    f"not decided (too few rows; target ≥ {TARGET_ROWS:,} rows/s)"
                    if few
                    else verdict(
                        target["rows_per_s"] if target else None, TARGET_ROWS, True, " rows/s"
                    )
                ),
            )
        ]

    def facts(self, data: Results) -> list[str]:
        c = data["facts"].get("persister_capacity")
        if not c:
            return []
        rows = [(m["mode"], f"{m['rows_per_s']:,}") for m in c["modes"]]
        return [
            "## Persister capacity (experiment S)",
            "",
            f"`bench.persister` (`make bench-persister`) on its own Redis and MariaDB: "
            f"{c['rows']:,} entries put into the persist streams first, then drained by the "
            "persister (rows/s from the first row stored to the last); and "
            f"{c['sync_rows']:,} messages inserted and committed one at a time. Under "
            f"{FEW_ROWS:,} rows the drain lasts only a few polls and the figures are "
            "unreliable.",
            "",
            table(rows, ("mode", "rows/s")),
            "",
        ]
