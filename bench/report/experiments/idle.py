"""Experiment 6: RSS per idle connection on one gateway."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import table, verdict
from bench.report.results import Results, Row

TARGET_KB = 30.0  # RSS per connection


class Idle(Experiment):
    key = "6"

    def rows(self, data: Results) -> list[Row]:
        idle = data["facts"].get("idle")
        if not idle:
            return []
        return [
            (
                f"6. idle connections on one gateway ({idle['connections']:,})",
                "-",
                f"{idle['rss_per_connection_kb']} KB RSS per connection",
                verdict(idle["rss_per_connection_kb"], TARGET_KB, False, " KB"),
            )
        ]

    def facts(self, data: Results) -> list[str]:
        if "idle" not in data["facts"]:
            return []
        facts = data["facts"]["idle"]
        return ["## Idle (experiment 6)", "", table(list(facts.items()), ("", "")), ""]
