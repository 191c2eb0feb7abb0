"""The soak report's tables: every snapshot metric idle → start → end, and the trend under load."""

from __future__ import annotations

from bench.soak.leaks import Flags
from bench.soak.numbers import delta, fmt
from bench.soak.probe import Snapshot
from loadtests.runner import LoadResult


def snapshots(idle: Snapshot, start: Snapshot, end: Snapshot, marks: Flags) -> str:
    """One line per process and metric of the end snapshot, flagged by ``marks``."""
    lines = [
        "| process | metric | idle | start | end | Δ start → end | flag |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for name, values in end.items():
        for metric, value in values.items():
            flag = marks.get((name, metric), "")
            lines.append(
                f"| {name} | {metric} | {fmt(idle.get(name, {}).get(metric))} "
                f"| {fmt(start.get(name, {}).get(metric))} | {fmt(value)} "
                f"| {delta(start.get(name, {}).get(metric), value)} "
                f"| {'⚠ ' + flag if flag else ''} |"
            )
    return "\n".join(lines)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def trend(result: LoadResult) -> str:
    """Under steady load: the first vs the last few seconds of the soak phase ("" without
    enough samples)."""
    soak = next((p for p in result.phases if p.name == "soak"), None)
    if soak is None:
        return ""
    lines = [
        "| process | metric | first 5 s | last 5 s | Δ |",
        "|---|---|--:|--:|--:|",
    ]
    for name in sorted(soak.procs):
        if name.startswith("loadgen"):
            continue
        rss = [r / 2**20 for _, r in soak.procs[name]]
        if len(rss) >= 10:
            a, b = _mean(rss[:5]), _mean(rss[-5:])
            lines.append(f"| {name} | rss_mb | {a:.1f} | {b:.1f} | {delta(a, b)} |")
    for key in sorted(soak.extras):
        values = soak.extras[key]
        if len(values) >= 10 and key.endswith((".tasks", ".connections", ".backlog")):
            name, metric = key.split(".", 1)
            a, b = _mean(values[:5]), _mean(values[-5:])
            lines.append(f"| {name} | {metric} | {a:.1f} | {b:.1f} | {delta(a, b)} |")
    return "\n".join(lines) if len(lines) > 2 else ""
