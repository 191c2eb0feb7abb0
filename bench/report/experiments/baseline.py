"""Experiment 7: the textbook Starlette + broadcaster app, the same peak search."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.markdown import fmt, verdict
from bench.report.results import Results, Row, Run, faults, find

TARGET_RATIO = 20.0  # this project's best deliveries/s over the baseline's


def best_held(data: Results) -> tuple[int, str, Run] | None:
    """This project's best deliveries/s at p99 ≤ the bound on the big-room workload: the peak
    search's highest held step, or any verified run of experiments 1, 2 or 4 within the bound
    (with what it was, and its run)."""
    s = data["settings"]
    found: list[tuple[int, str, Run]] = []
    for r in data["runs"]:
        if r["experiment"] not in ("1", "2", "4") or r["users"] != s["users"]:
            continue
        if r.get("peak"):
            found.append((r["peak"]["deliveries_per_s"], f"{r['label']} {r['peak']['step']}", r))
        elif r["experiment"] != "4" and r["verified"] and r["p99_ms"] <= s["p99_ms"]:
            found.append((r["deliveries_per_s"], r["label"], r))
    return max(found, key=lambda f: f[0], default=None)


class Baseline(Experiment):
    key = "7"
    charted = True

    def rows(self, data: Results) -> list[Row]:
        run = find(data, "e7-baseline")
        if not run:
            return []
        p99 = data["settings"]["p99_ms"]
        base = run.get("peak")
        ours = best_held(data)
        ratio = ours[0] / base["deliveries_per_s"] if ours and base else None
        if base:
            shown = (
                f"baseline {base['deliveries_per_s']:,}/s at {base['rate']:g} msgs/s "
                f"(p99 {base['p99_ms']} ms)"
            )
        else:
            shown = "baseline: no step held"
        shown += f"; this project {ours[0]:,}/s ({ours[1]})" if ours else "; this project: -"
        shown += f"; ratio {fmt(ratio)}x at p99 ≤ {p99:g} ms"
        # Order and loss over each whole run: the baseline's reorders do not fail its steps.
        shown += f"; over the run, baseline: {faults(run)}"
        if ours:
            shown += f"; this project ({ours[2]['label']}): {faults(ours[2])}"
        return [
            (
                "7. textbook Starlette + broadcaster, same workload",
                "-",
                shown,
                verdict(ratio, TARGET_RATIO, True, "x"),
            )
        ]
