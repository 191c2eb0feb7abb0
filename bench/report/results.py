"""Reading ``results.json``: its runs, and how one run or peak step reads in a sentence."""

from __future__ import annotations

from typing import Any

Results = dict[str, Any]  # results.json: settings, chat_env, elapsed_s, runs, facts
Run = dict[str, Any]  # one entry of its "runs" (bench.run.Run.row)
Row = tuple[str, str, str, str]  # a summary line: experiment, original, this project, target


def find(data: Results, label: str) -> Run | None:
    """The run labelled ``label``, if it ran."""
    return next((r for r in data["runs"] if r["label"] == label), None)


def of_experiment(data: Results, experiment: str) -> list[Run]:
    """The runs of one experiment, in the order they ran."""
    return [r for r in data["runs"] if r["experiment"] == experiment]


def verified(run: Run | None) -> str:
    """✓, or ✗ and the first two problems; empty for a run that did not happen."""
    if run is None:
        return ""
    return "✓" if run["verified"] else "✗ " + "; ".join(run["problems"][:2])


def delivered(data: Results, label: str) -> str:
    """Deliveries/s and p99 of the run labelled ``label``, verified or not."""
    r = find(data, label)
    if r is None:
        return "not run"
    return f"{r['deliveries_per_s']:,}/s p99 {r['p99_ms']} ms {verified(r)}"


def cross_pct(run: Run | None) -> str:
    """The share of other users' messages a cross-gateway run delivered."""
    if run is None or run.get("cross_delivery_pct") is None:
        return "not run"
    return f"{run['cross_delivery_pct']}%"


def step_text(step: dict[str, Any]) -> str:
    """One step of a peak search in a sentence."""
    ok = "verified" if step.get("clean", True) else "NOT verified"
    return (
        f"{step['deliveries_per_s']:,}/s at {step['rate']:g} msgs/s, p99 {step['p99_ms']} ms, {ok}"
    )


def faults(run: Run | dict[str, Any]) -> str:
    """Gaps, reorders and duplicates a run (or a step) saw, zeros included."""
    return (
        f"{run.get('gaps', 0):,} gaps, {run.get('reordered', 0):,} reordered, "
        f"{run.get('duplicates', 0):,} duplicates"
    )
