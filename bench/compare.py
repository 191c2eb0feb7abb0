"""Experiment P: the project and its peers side by side (issue 15).

The same load generator, the same nginx template, the same ladders, in one run, against three
stacks of three server processes sharing one Redis on this machine:

- ``project``: three gateways (plus the persister and MariaDB: it stores every message);
- ``node``: Socket.IO 4.8 on Node 20 with @socket.io/redis-adapter (``bench/peers/node``);
- ``python``: python-socketio 5 with ``AsyncRedisManager`` under uvicorn (``bench/peers/python``).

Two scenarios: one room of ``BENCH_USERS`` (1,000) and many small rooms (``BENCH_ROOMS_USERS``
in ``BENCH_ROOMS_COUNT`` rooms). Each climbs its ladder (``BENCH_COMPARE_ONE_RATES``,
``BENCH_ROOMS_RATES``) until p99 exceeds ``BENCH_P99_MS`` twice in a row or verification fails
(a gap, a reorder, a duplicate, a lost echo: the peers are held to the same checks, by
per-sender counters in the payload). The report puts the held steps next to each other.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from bench.ladder import judges
from bench.peers import ensure_node_peer, ensure_python_peer, peer_stack
from bench.rooms import cpu_per_message
from loadtests.runner import run_load
from loadtests.worker import Phase
from stack.processes import RedisServer

if TYPE_CHECKING:
    from bench.run import Bench

StackKind = Literal["project", "node", "python"]
Scenario = Literal["one-room", "small-rooms"]
STACKS: tuple[StackKind, ...] = ("project", "node", "python")


def part_compare(bench: Bench, want: set[str]) -> None:
    """Every scenario against every stack (each stack started once for both scenarios)."""
    if "P" not in want:
        return
    for kind in STACKS:
        with bench.attempt(f"experiment P, {kind}"), _stack(bench, kind) as (url, pids):
            for scenario in ("one-room", "small-rooms"):
                with bench.attempt(f"experiment P, {kind}, {scenario}"):
                    ladder(bench, kind, scenario, url, pids)


@contextlib.contextmanager
def _stack(bench: Bench, kind: StackKind) -> Iterator[tuple[str, dict[str, int]]]:
    """(the ws URL through nginx, name → pid) of a started stack; stopped on exit."""
    if kind == "project":
        with bench.stack(3) as stack:
            yield stack.ws_url, bench.pids(stack)
        return
    (ensure_node_peer if kind == "node" else ensure_python_peer)()
    bench.stacks += 1
    work = bench.work / f"peer{bench.stacks}-{kind}"
    redis = RedisServer(work / "redis").start()
    try:
        print(f"starting peer: {kind}, 3 processes", file=sys.stderr, flush=True)
        with peer_stack(kind, work, redis.url, 3) as peers:
            assert redis.proc is not None
            yield peers.url, {**peers.pids(), "redis": redis.proc.pid}
    finally:
        redis.stop()


def ladder(
    bench: Bench, kind: StackKind, scenario: Scenario, url: str, pids: dict[str, int]
) -> None:
    """One stack, one scenario: the rate ladder, recorded as a run of experiment P."""
    from bench.run import Run, _peak_notes

    s = bench.s
    label = f"eP-{scenario}-{kind}"

    ok, go_on = judges(s.p99_ms, s.peak_strikes)

    if scenario == "one-room":
        users, rates = s.users, s.compare_one_rates
        layout: dict[str, Any] = {"rooms": [label], "room_mode": "all"}
    else:
        users, rates = s.rooms_users, s.rooms_rates
        rooms = [f"{label}-{i}" for i in range(s.rooms_count)]
        layout = {"rooms": rooms, "room_mode": "spread"}
    phases = [Phase("ramp", s.ramp_s, rates[0], measured=False)]
    phases += [Phase(f"{r:g}/s", s.step_s, r) for r in rates]
    cfg = bench.config(
        label, [url], users, phases, **layout, drain_s=10.0,
        client="picows" if kind == "project" else "socketio",
        connect_concurrency=200, connect_timeout_s=60 + users / 100,
    )  # fmt: skip
    result = run_load(cfg, pids, phase_ok=go_on)
    steps = [p for p in result.phases if p.measured]
    top = steps[-1].rate if steps else rates[0]
    run = bench.record(Run("P", label, 3, users, top, result))
    _peak_notes(run, steps, ok)
    run.notes["stack"] = kind
    run.notes["scenario"] = scenario
    run.notes["room_size"] = users if scenario == "one-room" else users // s.rooms_count
    run.notes["cpu_per_step"] = [cpu_per_message(p) for p in steps]
