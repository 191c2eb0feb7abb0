"""Experiment 5: the persister's rows/s and lag during the peak search, then exactly-once."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import table, verdict
from bench.report.results import Results, Row

TARGET_ROWS = 30_000  # rows/s
TARGET_LAG_P99 = 2.0  # seconds


class Persister(Experiment):
    key = "5"

    def rows(self, data: Results) -> list[Row]:
        p = data["facts"].get("persister")
        if not p:
            return []
        return [
            (
                "5. persister during 4",
                "-",
                f"{p['rows_per_s_mean']:,} rows/s mean ({p['rows_per_s_max']:,} max), "
                f"lag p99 {p['lag_p99_s']} s, exactly once: {p['exactly_once']}",
                verdict(p["rows_per_s_max"], TARGET_ROWS, True, " rows/s")
                + "; lag "
                + verdict(p["lag_p99_s"], TARGET_LAG_P99, False, " s"),
            )
        ]

    def facts(self, data: Results) -> list[str]:
        if "persister" not in data["facts"]:
            return []
        facts = data["facts"]["persister"]
        return ["## Persister (experiment 5)", "", table(list(facts.items()), ("", "")), ""]
