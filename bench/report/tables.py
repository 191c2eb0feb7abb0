"""The report's tables over every run: each run's numbers, and each peak search step by step."""

from __future__ import annotations

from typing import Any

from bench.report.experiments import EXPERIMENTS
from bench.report.markdown import table
from bench.report.results import Results, Run, step_text

RUN_HEADER = (
    "run",
    "gw",
    "users",
    "offered/s",
    "sent/s",
    "accepted/s",
    "deliveries/s",
    "frames/s",
    "MB/s",
    "p50",
    "p95",
    "p99",
    "max ms",
    "verified",
    "CPU% (100 = 1 core) / max RSS",
)
STEP_HEADER = (
    "run",
    "step",
    "sent/s",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "verification",
    "gaps",
    "reordered",
    "held",
)


def _run_row(r: Run) -> tuple[Any, ...]:
    procs = ", ".join(f"{k} {v['cpu_pct']}%/{v['rss_mb']}MB" for k, v in r["processes"].items())
    return (
        r["label"],
        r["gateways"],
        r["users"],
        f"{r['offered_rate']:g}",
        f"{r['sent_per_s']:,}",
        f"{r.get('echoed_per_s', 0):,}",
        f"{r['deliveries_per_s']:,}",
        f"{r['frames_per_s']:,}",
        r["mb_per_s"],
        r["p50_ms"],
        r["p95_ms"],
        r["p99_ms"],
        r["max_ms"],
        "✓" if r["verified"] else "✗ " + "; ".join(r["problems"]),
        procs,
    )


def every_run(data: Results) -> str:
    """One line per run: rates, latency, verification and the processes' CPU and memory."""
    return table([_run_row(r) for r in data["runs"]], RUN_HEADER)


def _failed(step: dict[str, Any]) -> str:
    bad = [f"{k}={step[k]}" for k in ("gaps", "duplicates", "errors") if step.get(k)]
    return "✗ " + ", ".join(bad) if bad else "✗"


def _step_row(r: Run, step: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["label"],
        step["step"],
        f"{step.get('sent_per_s', 0):,}",
        f"{step['deliveries_per_s']:,}",
        step.get("p50_ms", "-"),
        step["p99_ms"],
        "✓" if step["clean"] else _failed(step),
        f"{step.get('gaps', 0):,}",
        f"{step['reordered']:,}",
        "✓" if step["held"] else "✗",
    )


def _outcome(r: Run, p99_ms: float) -> str:
    """How a peak search ended: its highest held step, or its best step."""
    peak, best = r.get("peak"), r.get("best_step")
    if peak:
        line = f"- {r['label']}: highest step that held: {step_text(peak)}."
    else:
        line = f"- {r['label']}: no step held (p99 ≤ {p99_ms:g} ms and verified)" + (
            f"; best step {step_text(best)}." if best else "."
        )
    if r.get("stopped_after"):
        line += f" The search stopped after step {r['stopped_after']}."
    return line


def peak_searches(data: Results) -> list[str]:
    """The "Peak searches" section (empty without one): every step, then how each ended.
    Experiments that show their ladders themselves (R, P) are left to their own section."""
    own = {e.key for e in EXPERIMENTS if e.own_ladders}
    searches = [
        r for r in data["runs"] if r.get("steps") is not None and r["experiment"] not in own
    ]
    steps = [_step_row(r, step) for r in searches for step in r["steps"]]
    if not steps:
        return []
    p99_ms = data["settings"]["p99_ms"]
    return [
        "## Peak searches",
        "",
        table(steps, STEP_HEADER),
        "",
        *(_outcome(r, p99_ms) for r in searches),
        "",
    ]
