"""The report's PNG charts: throughput and p99 per run, latency CDFs, and one chart per scenario
of the ladders' steps (every stack measured on that scenario on the same axes).

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
    """The charted experiments' runs; a peak search's as its highest held step (none if no
    step held)."""
    charted = {e.key for e in EXPERIMENTS if e.charted}
    runs = []
    for r in data["runs"]:
        if r["experiment"] not in charted:
            continue
        if r.get("steps") is None:
            runs.append(r)
        elif r.get("peak"):
            peak = r["peak"]
            runs.append({**r, "deliveries_per_s": peak["deliveries_per_s"],
                         "p99_ms": peak["p99_ms"], "label": r["label"] + " (peak)"})  # fmt: skip
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
    """latency_cdf.png: every run's latency distribution (drawn even with no run), but those of
    experiments whose steps are charted per scenario (R, P)."""
    import matplotlib.pyplot as plt

    own = {e.key for e in EXPERIMENTS if e.own_ladders}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in data["runs"]:
        if r["cdf"] and r["experiment"] not in own:
            xs, ys = zip(*r["cdf"], strict=True)
            ax.plot(xs, ys, label=r["label"])
    ax.set_xscale("log")
    ax.set_xlabel("latency, client send → receipt (ms)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("latency CDF (measured phases)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return [_save(fig, out, "latency_cdf.png")]


STACK_NAMES = {"project": "this project", "node": "Node Socket.IO", "python": "python-socketio"}
Series = tuple[str, list[dict[str, Any]]]  # a legend label and its run's steps


def _scenario(r: Run) -> str:
    """Runs whose ladders share one workload share a scenario (and a chart)."""
    if r["experiment"] in ("4", "7"):
        return "big-room"
    if r["experiment"] == "R":
        return "rooms"
    if r["experiment"] == "P":
        return f"compare-{r.get('scenario', '?')}"
    return f"experiment-{r['experiment']}"


def _title(key: str, runs: list[Run]) -> str:
    first = runs[0]
    users, size = first["users"], first.get("room_size", "?")
    if key == "big-room":
        return f"one room of {users:,} users: this project (4) and the textbook baseline (7)"
    if key == "rooms":
        return f"many small rooms: {users:,} users, rooms of {size} (R)"
    if key == "compare-one-room":
        return f"one room of {users:,}: this project and its peers, 3 processes each (P)"
    if key == "compare-small-rooms":
        return (
            f"many small rooms ({users:,} users, rooms of {size}): this project and its peers, "
            "3 processes each (P)"
        )
    return key


def scenarios(data: Results) -> list[tuple[str, str, list[Series]]]:
    """(file name, title, series) per scenario with a ladder, in the order they ran."""
    groups: dict[str, list[Run]] = {}
    for r in data["runs"]:
        if r.get("steps"):
            groups.setdefault(_scenario(r), []).append(r)
    return [
        (
            f"steps_{key}.png",
            _title(key, runs),
            [(STACK_NAMES.get(r.get("stack", ""), str(r["label"])), r["steps"]) for r in runs],
        )
        for key, runs in groups.items()
    ]


def _plain(axis: Any, ticks: list[float] | None = None) -> None:
    """Plain numbers on a log axis (300, not 3 x 10²): at ``ticks`` if given (the ladder's
    rates), else at 1, 2 and 5 of every decade."""
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogLocator,
        NullFormatter,
        NullLocator,
    )

    plain = FuncFormatter(lambda v, _: f"{v:,.6g}")
    if ticks:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(NullFormatter())


def scenario_steps(out: Path, data: Results) -> list[str]:
    """steps_<scenario>.png: deliveries/s, p50 and p99 against the offered rate, one chart per
    scenario with every stack (or variant) measured on it on the same axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    made = []
    for name, title, series in scenarios(data):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        for label, steps in series:
            xs = [x["rate"] for x in steps]
            for ax, key in zip(axes, ("deliveries_per_s", "p50_ms", "p99_ms"), strict=True):
                ys = [x.get(key, 0) for x in steps]
                (line,) = ax.plot(xs, ys, "o-", label=label)
                missed = [(x, y) for x, y, st in zip(xs, ys, steps, strict=True) if not st["held"]]
                if missed:  # hollow markers: the steps that did not hold
                    mx, my = zip(*missed, strict=True)
                    ax.plot(mx, my, "o", color="white", markeredgecolor=line.get_color(),
                            linestyle="none")  # fmt: skip
        for ax, ylabel in zip(axes, ("deliveries/s", "p50 ms", "p99 ms"), strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("offered msgs/s")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].set_yscale("log")
        axes[2].set_yscale("log")
        axes[2].axhline(data["settings"]["p99_ms"], color="red", linestyle="--")
        axes[0].legend(fontsize=8)
        rates = sorted({x["rate"] for _, steps in series for x in steps})
        for ax in axes:
            _plain(ax.xaxis, rates)
            ax.tick_params(axis="x", labelsize=7, labelrotation=45)
        _plain(axes[1].yaxis)
        _plain(axes[2].yaxis)
        axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        fig.suptitle(title + " (hollow: a step that did not hold)", fontsize=10)
        made.append(_save(fig, out, name))
    return made


def charts(out: Path, data: Results) -> list[str]:
    """Draw every chart into ``out``; return their file names, in the report's order."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a bench box
    return [*bars(out, data), *latency_cdf(out, data), *scenario_steps(out, data)]
