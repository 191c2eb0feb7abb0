"""Experiment R: many small rooms (issue 15).

Real chat is mostly rooms of a handful of people. ``BENCH_ROOMS_USERS`` users (5,000) in
``BENCH_ROOMS_COUNT`` rooms (1,000: rooms of 5), every user sending in its room, on the
three-gateway stack through nginx; then the variant where each user is in
``BENCH_ROOMS_PER_USER`` rooms (3) over one connection, the extra rooms joined with ``join``
commands (rooms are multiplied by the same factor, so a room still has 5 members). Each variant
climbs the rate ladder ``BENCH_ROOMS_RATES``; a step holds at p99 ≤ ``BENCH_P99_MS`` with every
message verified (per-room gapless seqs, no duplicates, every echo), and after the run every
message must be stored exactly once in MariaDB.

Per step the report gets msgs/s, deliveries/s, p50/p99, the CPU of every process and the CPU
microseconds one message costs in each (100 % of a core for one second is 1,000,000 µs).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from bench.ladder import judges
from loadtests.runner import PhaseResult, run_load
from loadtests.worker import Phase

if TYPE_CHECKING:
    from bench.run import Bench
    from stack.topology import Stack

STORE_WAIT_S = 120  # the persister catches up after an overloaded step within this


def part_rooms(bench: Bench, want: set[str]) -> None:
    """Both variants of experiment R, each on a fresh three-gateway stack."""
    if "R" not in want:
        return
    s = bench.s
    variants = [("eR-rooms", 1), ("eR-multi", s.rooms_per_user)]
    for label, per_user in variants:
        if per_user < 1 or (per_user == 1 and label != "eR-rooms"):
            continue
        with bench.attempt(f"experiment R, {label}"), bench.stack(3) as stack:
            ladder(bench, stack, label, per_user)


def ladder(bench: Bench, stack: Stack, label: str, per_user: int) -> None:
    """One variant: the rate ladder, then exactly-once in MariaDB."""
    from bench.run import Run, _peak_notes

    s = bench.s
    n_rooms = s.rooms_count * per_user
    rooms = [f"{label}-{i}" for i in range(n_rooms)]

    ok, go_on = judges(s.p99_ms, s.peak_strikes)

    rates = s.rooms_rates
    # First everyone connected and silent: what idle connections cost (target ≤ 2 % of a core
    # per gateway), then a trickle (the persister's cost per row at a low rate), then the ladder.
    phases = [Phase("idle", s.rooms_idle_s, 0.0, measured=False)]
    phases += [Phase("trickle", s.rooms_trickle_s, s.rooms_trickle_rate, measured=False)]
    phases += [Phase("ramp", s.ramp_s, rates[0], measured=False)]
    phases += [Phase(f"{r:g}/s", s.step_s, r) for r in rates]
    cfg = bench.config(
        label, [stack.ws_url], s.rooms_users, phases,
        rooms=rooms, room_mode="spread", rooms_per_user=per_user,
        join_by_command=per_user > 1, drain_s=10.0,
        connect_concurrency=200, connect_timeout_s=60 + s.rooms_users / 100,
    )  # fmt: skip
    result = run_load(cfg, bench.pids(stack), phase_ok=go_on)
    steps = [p for p in result.phases if p.measured]
    top = steps[-1].rate if steps else rates[0]
    run = bench.record(Run("R", label, len(stack.gateways), s.rooms_users, top, result))
    _peak_notes(run, steps, ok)
    run.notes["rooms"] = n_rooms
    run.notes["room_size"] = s.rooms_users * per_user // max(1, n_rooms)
    run.notes["rooms_per_user"] = per_user
    run.notes["cpu_per_step"] = [cpu_per_message(p) for p in steps]
    phase = {p.name: p for p in result.phases}
    if (idle := phase.get("idle")) is not None:
        run.notes["idle_cpu_pct"] = {name: round(idle.cpu(name), 1) for name in sorted(idle.procs)}
    if (trickle := phase.get("trickle")) is not None and trickle.per_s("sent"):
        run.notes["trickle_cpu"] = cpu_per_message(trickle)
    run.notes["stored"] = stored_exactly_once(stack, label, result.last_seq)
    print(f"== {label} stored: {run.notes['stored']}", file=sys.stderr, flush=True)


def cpu_per_message(p: PhaseResult) -> dict[str, Any]:
    """CPU % of each process during a step and the µs of CPU each message in cost there."""
    sent = p.per_s("sent")
    cpu = {name: round(p.cpu(name), 1) for name in sorted(p.procs)}
    us = {name: round(c * 1e4 / sent, 1) if sent else None for name, c in cpu.items()}
    servers = sum(c for name, c in cpu.items() if not name.startswith("loadgen"))
    return {
        "step": p.name,
        "sent_per_s": round(sent),
        "cpu_pct": cpu,
        "us_per_msg": us,
        "server_us_per_msg": round(servers * 1e4 / sent, 1) if sent else None,
    }


def stored_exactly_once(stack: Stack, label: str, last_seq: dict[str, int]) -> dict[str, Any]:
    """Wait (bounded) until MariaDB holds every published message of the run's rooms, then
    compare room by room: one row per seq, seqs 1..last, nothing more."""
    expected = {room: seq for room, seq in last_seq.items() if room.startswith(f"{label}-")}
    want = sum(expected.values())
    deadline = time.monotonic() + STORE_WAIT_S
    rows: list[tuple[Any, ...]] = []
    while True:
        rows = stack.mariadb.query(
            "chat",
            "SELECT room_id, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM message"
            " WHERE room_id LIKE %s GROUP BY room_id",
            f"{label}-%",
        )
        if sum(int(r[1]) for r in rows) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    got = {str(r[0]): tuple(int(x) for x in r[1:]) for r in rows}
    wrong = [
        room for room, last in expected.items() if last and got.get(room) != (last, last, 1, last)
    ]
    extra = [room for room in got if room not in expected]
    return {
        "messages_published": want,
        "rows": sum(v[0] for v in got.values()),
        "rooms": len(expected),
        "rooms_wrong": len(wrong) + len(extra),
        "examples": [(room, expected.get(room), got.get(room)) for room in (wrong + extra)[:3]],
        "exactly_once": not wrong and not extra,
    }
