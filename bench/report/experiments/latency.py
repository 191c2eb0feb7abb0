"""Experiment L: latency at low load (few users, a low rate) on 3 gateways."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import verdict
from bench.report.results import Results, Row, find

TARGET_P50 = 5.0  # ms
TARGET_P99 = 25.0  # ms


class Latency(Experiment):
    key = "L"
    charted = True

    def rows(self, data: Results) -> list[Row]:
        low = find(data, "low-latency")
        if not low:
            return []
        return [
            (
                f"low load: {low['users']} users, {low['offered_rate']:g} msgs/s",
                "-",
                f"p50 {low['p50_ms']} ms, p99 {low['p99_ms']} ms",
                "p50 "
                + verdict(low["p50_ms"], TARGET_P50, False, " ms")
                + "; p99 "
                + verdict(low["p99_ms"], TARGET_P99, False, " ms"),
            )
        ]
