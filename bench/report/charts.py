"""The report's PNG charts: throughput and p99 per run, latency CDFs, peak searches' steps.

matplotlib is imported only when charts are drawn: the rest of the report does without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report.experiments import EXPERIMENTS
from bench.report.results import Results, Run

DPI = 100


def _save(fig: Any, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


def _bar_runs(data: Results) -> list[Run]:
    """The charted experiments' runs, then each peak search's highest held step."""
    charted = {e.key for e in EXPERIMENTS if e.charted}
    runs = [r for r in data["runs"] if r["experiment"] in charted]
    runs += [
        {
            **r,
            "deliveries_per_s": r["peak"]["deliveries_per_s"],
            "p99_ms": r["peak"]["p99_ms"],
            "label": r["label"] + " (peak)",
        }
        for r in data["runs"]
        if r.get("peak")
    ]
    return runs


def bars(out: Path, data: Results) -> list[str]:
    """deliveries.png and p99.png (with the p99 bound): one bar per run."""
    import matplotlib.pyplot as plt

    runs = _bar_runs(data)
    if not runs:
        return []
    made = []
    for key, name, title in (
        ("deliveries_per_s", "deliveries.png", "deliveries/s"),
        ("p99_ms", "p99.png", "p99 latency (ms)"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.bar([r["label"] for r in runs], [r[key] for r in runs], color="#4477aa")
        ax.set_title(title + " per experiment")
        ax.tick_params(axis="x", rotation=30)
        if key == "p99_ms":
            ax.axhline(data["settings"]["p99_ms"], color="red", linestyle="--")
        made.append(_save(fig, out, name))
    return made


def latency_cdf(out: Path, data: Results) -> list[str]:
    """latency_cdf.png: every run's latency distribution (drawn even with no run)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in data["runs"]:
        if r["cdf"]:
            xs, ys = zip(*r["cdf"], strict=True)
            ax.plot(xs, ys, label=r["label"])
    ax.set_xscale("log")
    ax.set_xlabel("latency, server ts → receipt (ms)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("latency CDF (measured phases)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return [_save(fig, out, "latency_cdf.png")]


def peak_steps(out: Path, data: Results) -> list[str]:
    """peak_steps.png: deliveries/s and p99 against the offered rate, per peak search."""
    import matplotlib.pyplot as plt

    steps = [(r["label"], r["steps"]) for r in data["runs"] if r.get("steps")]
    if not steps:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, st in steps:
        a1.plot([x["rate"] for x in st], [x["deliveries_per_s"] for x in st], "o-", label=label)
        a2.plot([x["rate"] for x in st], [x["p99_ms"] for x in st], "o-", label=label)
    a1.set_xlabel("offered msgs/s")
    a1.set_ylabel("deliveries/s")
    a2.set_xlabel("offered msgs/s")
    a2.set_ylabel("p99 ms")
    a2.axhline(data["settings"]["p99_ms"], color="red", linestyle="--")
    for a in (a1, a2):
        a.set_xscale("log")
        a.legend(fontsize=8)
    return [_save(fig, out, "peak_steps.png")]


def charts(out: Path, data: Results) -> list[str]:
    """Draw every chart into ``out``; return their file names, in the report's order."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a bench box
    return [*bars(out, data), *latency_cdf(out, data), *peak_steps(out, data)]
