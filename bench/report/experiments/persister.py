"""Experiment 5: did the persister keep up with the peak search of 4, and store it exactly once?

Its rows/s there follow the rate the peak offered, so they say nothing about capacity: that is
experiment S (``bench.persister``, ``make bench-persister``).
"""

from __future__ import annotations

from typing import Any

from bench.report.experiments.base import Experiment
from bench.report.markdown import fmt, table, verdict
from bench.report.results import Results, Row

TARGET_LAG_P99 = 2.0  # seconds
CATCH_UP_WAIT_S = 120  # bench.run.peak waits this long for the last rows after the run


def kept_up(p: dict[str, Any]) -> bool:
    """Lag p99 within the bound and, after the run, every message in MariaDB."""
    lag_ok: bool = p["lag_p99_s"] <= TARGET_LAG_P99
    return lag_ok and p.get("rows", 0) >= p.get("messages_published", 0)


def _backlog(p: dict[str, Any]) -> str:
    if "backlog_max" not in p:
        return "backlog not sampled"
    p99 = f"p99 {fmt(p['backlog_p99'])}, " if "backlog_p99" in p else ""
    return f"backlog {p99}max {fmt(p['backlog_max'])} entries"


def _caught_up(p: dict[str, Any]) -> str:
    published, rows = p.get("messages_published", 0), p.get("rows", 0)
    after = p.get("seconds_to_catch_up_after_run")
    if rows >= published:
        return f"all {published:,} messages in MariaDB {after} s after the run"
    return f"only {rows:,} of {published:,} messages in MariaDB {CATCH_UP_WAIT_S} s after the run"


class Persister(Experiment):
    key = "5"

    def asked(self, data: Results) -> bool:  # the peak search of 4 measures it
        return bool({"4", "5"} & set(data["settings"].get("experiments", "5")))

    def rows(self, data: Results) -> list[Row]:
        p = data["facts"].get("persister")
        if not p:
            return []
        state = "kept up" if kept_up(p) else "FELL BEHIND"
        return [
            (
                "5. persister during 4: kept up?",
                "-",
                f"{state}: lag p99 {p['lag_p99_s']} s (max {p.get('lag_max_s', '-')} s), "
                f"{_backlog(p)}; {_caught_up(p)}; exactly once: {p['exactly_once']}; "
                f"{p['rows_per_s_mean']:,} rows/s mean ({p['rows_per_s_max']:,} max) = the "
                "rate offered, not capacity (see S)",
                "lag p99 "
                + verdict(p["lag_p99_s"], TARGET_LAG_P99, False, " s")
                + f"; exactly once: {'met' if p['exactly_once'] else 'MISSED'}",
            )
        ]

    def facts(self, data: Results) -> list[str]:
        if "persister" not in data["facts"]:
            return []
        facts = data["facts"]["persister"]
        return [
            "## Persister during the peak (experiment 5)",
            "",
            "Sampled once a second from the persister's `/metrics` during the peak steps of "
            "experiment 4: rows/s written follow the rate offered there; the lag (age of the "
            "oldest message not yet written) says whether the persister kept up. After the "
            "run, every message of the room is looked up in MariaDB.",
            "",
            table(list(facts.items()), ("", "")),
            "",
        ]
