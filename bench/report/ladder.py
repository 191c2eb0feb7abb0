"""Rate ladders (experiments R and P): each step's numbers, and the CPU each process spent.

A ladder run carries ``steps`` (``bench.run._step``: one per measured step, in order) and
``cpu_per_step`` (``bench.rooms.cpu_per_message``: the CPU % of every process during each step
and the µs of CPU one message in cost there, 100 % of a core for 1 s being 1,000,000 µs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.report.markdown import fmt, table
from bench.report.results import Run

Step = dict[str, Any]  # one entry of a run's "steps"
Cpu = dict[str, Any]  # one entry of a run's "cpu_per_step"

LADDER_HEADER = (
    "step",
    "msgs/s sent",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "gaps",
    "duplicates",
    "reordered",
    "held",
)
# Process names by kind, in the order the tables show them; the load generator last.
KINDS = ("gateway", "peer", "nginx", "redis", "persister", "mariadb", "loadgen")
# Kinds summed per stack for a side-by-side table: the three app processes are the gateways of
# this project and the Socket.IO servers ("peer1".."peer3") of the others.
GROUPS = (
    ("app processes", ("gateway", "peer")),
    ("nginx", ("nginx",)),
    ("redis", ("redis",)),
    ("persister", ("persister",)),
    ("mariadb", ("mariadb",)),
)
LOADGEN = "loadgen"
CPU_NOTE = (
    "Each cell: CPU % (100 = one core) / µs of CPU per message in (CPU % x 10,000 / msgs/s "
    "sent). *servers*: every process but the load generator."
)


def ladder_row(step: Step) -> tuple[Any, ...]:
    return (
        step["step"],
        f"{step.get('sent_per_s', 0):,}",
        f"{step['deliveries_per_s']:,}",
        step.get("p50_ms", "-"),
        step["p99_ms"],
        f"{step.get('gaps', 0):,}",
        f"{step.get('duplicates', 0):,}",
        f"{step.get('reordered', 0):,}",
        "✓" if step["held"] else "✗",
    )


def ladder_table(run: Run) -> str:
    """Every step of one run's ladder."""
    return table([ladder_row(s) for s in run.get("steps") or []], LADDER_HEADER)


def step_at(run: Run | None, rate: float) -> Step | None:
    """The step of ``run``'s ladder at ``rate`` msgs/s offered, if it ran."""
    return next((s for s in (run or {}).get("steps") or [] if s["rate"] == rate), None)


def topped(run: Run | None) -> bool:
    """Whether ``run`` held the top step of its ladder: its limit lies above what was offered."""
    steps = (run or {}).get("steps") or []
    peak = (run or {}).get("peak")
    return bool(peak and steps and peak["rate"] >= max(s["rate"] for s in steps))


def cpu_at(run: Run, step: str) -> Cpu | None:
    """The CPU entry of the step named ``step`` (e.g. "1000/s")."""
    return next((c for c in run.get("cpu_per_step") or [] if c["step"] == step), None)


def _kind(name: str) -> int:
    return next((i for i, k in enumerate(KINDS) if name.startswith(k)), len(KINDS))


def process_order(names: Iterable[str]) -> list[str]:
    """Process names by kind (gateways first, the load generator last), then by name."""
    return sorted(set(names), key=lambda n: (_kind(n), n))


def cell(pct: float | None, us: float | None) -> str:
    """ "CPU % / µs per message" ("-" for a process that was not there)."""
    if pct is None:
        return "-"
    return f"{fmt(pct)} % / {fmt(us)} µs"


def _servers_pct(entry: Cpu) -> float:
    return float(sum(c for n, c in entry["cpu_pct"].items() if not n.startswith(LOADGEN)))


def cpu_table(run: Run) -> str:
    """One line per step: each process's CPU and µs per message, and the servers' total."""
    entries: list[Cpu] = run.get("cpu_per_step") or []
    names = process_order(n for e in entries for n in e["cpu_pct"])
    rows = [
        (
            e["step"],
            f"{e['sent_per_s']:,}",
            *(cell(e["cpu_pct"].get(n), e["us_per_msg"].get(n)) for n in names),
            cell(_servers_pct(e), e.get("server_us_per_msg")),
        )
        for e in entries
    ]
    return table(rows, ("step", "msgs/s sent", *names, "servers"))


def grouped(entry: Cpu) -> dict[str, str]:
    """One step's CPU summed per group of processes (app processes, nginx, ..., servers,
    load generator), as cells."""

    def summed(prefixes: tuple[str, ...]) -> str:
        names = [n for n in entry["cpu_pct"] if n.startswith(prefixes)]
        if not names:
            return "-"
        us = [entry["us_per_msg"].get(n) for n in names]
        total = None if None in us else sum(u for u in us if u is not None)
        return cell(sum(entry["cpu_pct"][n] for n in names), total)

    out = {label: summed(prefixes) for label, prefixes in GROUPS}
    out["servers"] = cell(_servers_pct(entry), entry.get("server_us_per_msg"))
    out["load generator"] = summed((LOADGEN,))
    return out


GROUPED_HEADER = ("step", "msgs/s sent", *(g for g, _ in GROUPS), "servers", "load generator")
