"""Experiment P: this project, Socket.IO on Node and python-socketio, side by side.

Issue 15's targets, same box, same run: in many small rooms the project holds ≥ 1.5 x Node's
msgs/s and its p50 at 1,000 msgs/s is within 2 ms of Node's; in one room it holds ≥ 10 x Node's
deliveries/s.
"""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.ladder import (
    CPU_NOTE,
    GROUPED_HEADER,
    LADDER_HEADER,
    cpu_at,
    grouped,
    ladder_row,
    step_at,
    topped,
)
from bench.report.markdown import fmt, table, verdict
from bench.report.results import Results, Row, Run, of_experiment, step_text, verified

STACKS = {"project": "this project", "node": "Node Socket.IO", "python": "python-socketio"}
SCENARIOS = ("small-rooms", "one-room")
# What a scenario's ratio compares: msgs/s in for small rooms, deliveries/s for one room.
RATIO_KEY = {"small-rooms": "rate", "one-room": "deliveries_per_s"}
RATIO_WHAT = {"small-rooms": "held msgs/s", "one-room": "held deliveries/s"}
TARGET_RATIO = {"small-rooms": 1.5, "one-room": 10.0}  # x Node's
P50_RATE = 1000.0  # msgs/s: where small rooms' p50 is compared
TARGET_P50_MS = 2.0  # this project's p50 at most this much over Node's
LATENCY_NOTE = (
    "Latency, for every stack alike: from the send time the client wrote into the message "
    "(the head of this project's text, a field of the peers' payload) to its receipt, end to end "
    "through nginx and the servers."
)

Stacks = dict[str, Run]  # stack → its run of one scenario


def stacks(data: Results, scenario: str) -> Stacks:
    """The runs of one scenario by stack, in the order of ``STACKS``."""
    runs = {r.get("stack", ""): r for r in of_experiment(data, "P") if r["scenario"] == scenario}
    return {k: runs[k] for k in STACKS if k in runs}


def title(runs: Stacks, scenario: str) -> str:
    some = next(iter(runs.values()))
    if scenario == "one-room":
        return f"one room of {some['users']:,}"
    return f"many small rooms ({some['users']:,} users, rooms of {some.get('room_size', '?')})"


def held(run: Run | None, key: str) -> float | None:
    """A run's held ``key`` (0 if no step held, None if it did not run)."""
    if run is None:
        return None
    peak = run.get("peak")
    return float(peak[key]) if peak else 0.0


def ratio(runs: Stacks, scenario: str, peer: str) -> float | None:
    """This project's held figure over ``peer``'s (None unless both have one)."""
    key = RATIO_KEY[scenario]
    ours, theirs = held(runs.get("project"), key), held(runs.get(peer), key)
    return None if ours is None or not theirs else ours / theirs


def floor_ratio(runs: Stacks, scenario: str) -> float | None:
    """When Node held no step and this project held one: this project's held figure over
    Node's lowest step's, a lower bound of the ratio (Node holds less than a step it failed)."""
    key = RATIO_KEY[scenario]
    ours, node = held(runs.get("project"), key), runs.get("node")
    steps = (node or {}).get("steps") or []
    if not ours or held(node, key) != 0.0 or not steps:
        return None
    lowest = float(min(steps, key=lambda s: s["rate"])[key])
    return ours / lowest if lowest else None


def ratio_verdict(runs: Stacks, scenario: str) -> str:
    """The ratio target's verdict; a stack that held its ladder's top step makes the ratio a
    bound (this project's: a lower one; Node's: an upper one), or nothing if both did; Node
    holding no step makes it a lower bound."""
    r, target = ratio(runs, scenario, "node"), TARGET_RATIO[scenario]
    ours, node = topped(runs.get("project")), topped(runs.get("node"))
    bound = f"target ≥ {fmt(target)}x"
    floor = floor_ratio(runs, scenario)
    if floor is not None:
        why = "Node held no step, not even its ladder's lowest"
        if floor >= target:
            return f"met: over {fmt(floor)}x, {why} ({bound})"
        return f"not decided: over {fmt(floor)}x, {why} ({bound})"
    if r is None:
        return verdict(None, target, True, "x")
    if ours and node:
        return f"not measured: both held the top step of the ladder ({bound})"
    if ours and r < target:
        return f"not decided: at least {fmt(r)}x, this project held the top step ({bound})"
    if node and r >= target:
        return f"not decided: at most {fmt(r)}x, Node held the top step ({bound})"
    return verdict(r, target, True, "x")


def _times(x: float | None) -> str:
    return "-" if x is None else f"{fmt(x)}x"


def _counts(run: Run) -> str:
    return f"{run.get('gaps', 0):,} / {run.get('reordered', 0):,} / {run.get('duplicates', 0):,}"


def _p50_at(run: Run) -> str:
    step = step_at(run, P50_RATE)
    if step is None:
        return "not run"
    return f"{step['p50_ms']} ms" + ("" if step["held"] else " (not held)")


def _held_cell(r: Run) -> str:
    peak = r.get("peak")
    if not peak:
        return "none held"
    top = ", the ladder's top" if topped(r) else ""
    return f"{peak['rate']:g} ({peak['sent_per_s']:,} sent/s{top})"


def side_by_side(runs: Stacks, scenario: str) -> str:
    """One line per stack: held step, latency, faults over the run, and the ratio."""
    rows = []
    for kind, r in runs.items():
        peak = r.get("peak")
        rows.append(
            (
                STACKS[kind],
                _held_cell(r),
                f"{peak['deliveries_per_s']:,}" if peak else "-",
                f"{peak['p50_ms']} / {peak['p99_ms']}" if peak else "-",
                _p50_at(r),
                _counts(r),
                verified(r),
                "-" if kind == "project" else _times(ratio(runs, scenario, kind)),
            )
        )
    header = (
        "stack",
        "held msgs/s in",
        "deliveries/s",
        "p50 / p99 ms at the held step",
        f"p50 at {P50_RATE:,.0f} msgs/s",
        "gaps / reordered / duplicates (run)",
        "verified",
        f"this project ÷ it ({RATIO_WHAT[scenario]})",
    )
    return table(rows, header)


def common_step(runs: Stacks, prefer: float | None = None) -> float | None:
    """The rate to compare CPU at: ``prefer`` if every stack ran it, else the highest step every
    stack held, else the highest every stack ran."""
    ran = [{s["rate"] for s in r.get("steps") or []} for r in runs.values()]
    if not ran:
        return None
    if prefer is not None and all(prefer in x for x in ran):
        return prefer
    kept = [{s["rate"] for s in r.get("steps") or [] if s["held"]} for r in runs.values()]
    both = set.intersection(*kept) or set.intersection(*ran)
    return max(both, default=None)


def cpu_side_by_side(runs: Stacks, rate: float) -> str:
    rows = []
    for kind, r in runs.items():
        step = step_at(r, rate)
        entry = cpu_at(r, step["step"]) if step else None
        if entry is None:
            continue
        cells = grouped(entry)
        rows.append((STACKS[kind], entry["step"], f"{entry['sent_per_s']:,}",
                     *(cells[h] for h in GROUPED_HEADER[2:])))  # fmt: skip
    return table(rows, ("stack", *GROUPED_HEADER))


def _stack_text(kind: str, r: Run) -> str:
    peak = r.get("peak")
    if peak:
        shown = (
            f"{peak['rate']:g} msgs/s{' (top of the ladder)' if topped(r) else ''}, "
            f"{peak['deliveries_per_s']:,} deliveries/s, "
            f"p50 {peak['p50_ms']} / p99 {peak['p99_ms']} ms"
        )
    else:
        best = r.get("best_step")
        shown = "no step held" + (f" (best {step_text(best)})" if best else "")
    return (
        f"{STACKS[kind]}: {shown}; {r.get('gaps', 0):,} gaps, {r.get('reordered', 0):,} "
        f"reordered, {r.get('duplicates', 0):,} duplicates {verified(r)}"
    )


def held_row(runs: Stacks, scenario: str) -> Row:
    """The summary line of one scenario: every stack's held step and the ratio target."""
    what = RATIO_WHAT[scenario]
    ratios = ", ".join(
        f"÷ {STACKS[k]} {_times(ratio(runs, scenario, k))}" for k in runs if k != "project"
    )
    target = TARGET_RATIO[scenario]
    shown = "; ".join(_stack_text(k, r) for k, r in runs.items())
    return (
        f"P. {title(runs, scenario)}, 3 server processes per stack: {what}",
        "-",
        shown + (f"; this project {ratios}" if ratios else ""),
        f"{what} ≥ {fmt(target)}x Node's: " + ratio_verdict(runs, scenario),
    )


def p50_row(runs: Stacks) -> Row:
    """Small rooms: this project's p50 at 1,000 msgs/s against Node's."""
    at = {k: step_at(r, P50_RATE) for k, r in runs.items()}
    ours, node = at.get("project"), at.get("node")
    shown = ", ".join(
        f"{STACKS[k]} {s['p50_ms']} ms" + ("" if s["held"] else " (not held)")
        for k, s in at.items()
        if s
    )
    target = f"p50 within {fmt(TARGET_P50_MS)} ms of Node's: "
    if ours and node:
        diff = ours["p50_ms"] - node["p50_ms"]
        shown += f"; this project {diff:+.1f} ms"
        target += verdict(diff, TARGET_P50_MS, False, " ms over Node's")
    else:
        target += f"not measured (no {P50_RATE:,.0f} msgs/s step in both ladders)"
        rate = common_step({k: r for k, r in runs.items() if k in ("project", "node")})
        mine, theirs = step_at(runs.get("project"), rate or 0), step_at(runs.get("node"), rate or 0)
        if mine and theirs:
            shown = (
                f"not run; at {rate:g} msgs/s instead: this project {mine['p50_ms']} ms, "
                f"Node Socket.IO {theirs['p50_ms']} ms"
            )
        else:
            shown = shown or "not run"
    return (
        f"P. {title(runs, 'small-rooms')}: p50 at {P50_RATE:,.0f} msgs/s (end to end, every "
        "stack alike)",
        "-",
        shown,
        target,
    )


class Compare(Experiment):
    key = "P"
    own_ladders = True

    def rows(self, data: Results) -> list[Row]:
        out: list[Row] = []
        for scenario in SCENARIOS:
            runs = stacks(data, scenario)
            if not runs:
                continue
            out.append(held_row(runs, scenario))
            if scenario == "small-rooms":
                out.append(p50_row(runs))
        return out

    def notes(self, data: Results) -> list[str]:
        if not of_experiment(data, "P"):
            return []
        p99 = data["settings"]["p99_ms"]
        out = [
            "## Experiment P: this project and its peers side by side",
            "",
            "The same load generator, nginx template and ladders in one run, against three "
            "stacks of three server processes sharing one Redis: this project (gateways, plus "
            "the persister and MariaDB: it stores every message, the peers store nothing), "
            "Socket.IO on Node with @socket.io/redis-adapter, and python-socketio with "
            "`AsyncRedisManager` under uvicorn. A step holds at p99 ≤ "
            f"{p99:g} ms with every message verified (gaps, reorders, duplicates, echoes: the "
            "peers by per-sender counters in the payload). Ratios: held msgs/s in for small "
            "rooms, held deliveries/s for one room. " + LATENCY_NOTE,
            "",
        ]
        for scenario in SCENARIOS:
            runs = stacks(data, scenario)
            if runs:
                out += _scenario_notes(runs, scenario)
        return out


def _scenario_notes(runs: Stacks, scenario: str) -> list[str]:
    ladders = [(STACKS[k], *ladder_row(s)) for k, r in runs.items() for s in r.get("steps") or []]
    out = [
        f"### {title(runs, scenario)}",
        "",
        side_by_side(runs, scenario),
        "",
        "Every step:",
        "",
        table(ladders, ("stack", *LADDER_HEADER)),
        "",
    ]
    rate = common_step(runs, P50_RATE if scenario == "small-rooms" else None)
    if rate is not None:
        held_by_all = all((step_at(r, rate) or {}).get("held") for r in runs.values())
        out += [
            f"CPU per message at {rate:g} msgs/s offered, a step every stack ran"
            + (" and held. " if held_by_all else " (not every stack held it). ")
            + CPU_NOTE,
            "",
            cpu_side_by_side(runs, rate),
            "",
        ]
    return out
