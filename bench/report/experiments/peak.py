"""Experiment 4: the peak search, stepping the rate up while p99 holds its bound."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import verdict
from bench.report.results import Results, Row, faults, find, step_text

TARGET = 2_000_000  # deliveries/s


class Peak(Experiment):
    key = "4"
    charted = True

    def rows(self, data: Results) -> list[Row]:
        s = data["settings"]
        run = find(data, "e4-peak")
        peak = (run or {}).get("peak")
        if peak:
            shown = f"{step_text(peak)}, highest step that held"
        elif run and run.get("best_step"):
            shown = f"no step held; best step {step_text(run['best_step'])}"
        else:
            shown = "no step held" if run else "not run"
        if run:
            shown += f"; over the run {faults(run)}"
        # A search where no step held scores 0, one that did not run is not measured.
        held = peak["deliveries_per_s"] if peak else (0 if run else None)
        return [
            (
                f"4. peak, {s['users']} users, 3 gateways, p99 ≤ {s['p99_ms']:g} ms",
                "163,022 msgs/s",
                shown,
                verdict(held, TARGET, True, "/s"),
            )
        ]
