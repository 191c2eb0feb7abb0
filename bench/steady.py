"""``python -m bench.steady RATE SECONDS``: where one message's CPU goes, at one steady rate.

The profiling harness behind docs/benchmarks.md's "where the time goes" tables. A fresh
three-gateway stack (as experiment R: ``BENCH_ROOMS_USERS`` users in ``BENCH_ROOMS_COUNT``
rooms through nginx), everyone connected, then RATE msgs/s for SECONDS, every message verified.
It prints sent/s, deliveries/s, p50/p99, each process's CPU % and µs of CPU per message, and
the Redis commands of the steady phase per message (``INFO commandstats``, reset when it
starts). ``--spy gateway0`` (any process name printed) records that process with py-spy
(``--gil``, raw format, to ``--spy-out``) during the steady phase; py-spy is not a dependency
of the project: ``pip install py-spy`` first.

A tool for measuring before and after a change on the same box, not a benchmark with a verdict:
``make bench`` is that.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import redis

from bench.report.machine import cpu_speed
from bench.rooms import cpu_per_message
from bench.run import Bench
from bench.settings import BenchSettings
from loadtests.runner import PhaseResult, run_load
from loadtests.worker import Phase

IDLE_S = 3.0  # connected and silent, then a ramp to the rate
RAMP_S = 5.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steady", description=__doc__)
    parser.add_argument("rate", type=float, help="msgs/s in, over all users")
    parser.add_argument("seconds", type=float, help="length of the steady phase")
    parser.add_argument("--spy", help="a process to record with py-spy (e.g. gateway0)")
    parser.add_argument("--spy-out", default="steady-pyspy.txt", help="py-spy's raw output")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds < 2:
        parser.error("a rate above 0 and at least 2 seconds")
    s = BenchSettings()
    work = Path(tempfile.mkdtemp(prefix="bench-steady-"))
    bench = Bench(s, work, work)
    print(f"one core: {cpu_speed()}", flush=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if args.spy is not None and spy is None:
        parser.error("--spy: py-spy is not installed (pip install py-spy)")
    with bench.stack(3) as stack:
        pids = bench.pids(stack)
        if args.spy is not None and args.spy not in pids:
            parser.error(f"--spy: one of {', '.join(sorted(pids))}")
        admin = redis.Redis.from_url(stack.redis_servers()[0].url)
        commands: dict[str, Any] = {}
        owned: list[subprocess.Popen[bytes] | threading.Timer] = []

        def steady_starts() -> None:
            admin.config_resetstat()
            if args.spy is not None:
                spying = subprocess.Popen(
                    [str(spy), "record", "--nonblocking", "--gil",
                     "-r", "500", "-d", str(max(1, int(args.seconds) - 1)), "-f", "raw",
                     "-o", args.spy_out, "-p", str(pids[args.spy])],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                owned.append(spying)
            timer = threading.Timer(
                args.seconds, lambda: commands.update(admin.info("commandstats"))
            )
            timer.start()
            owned.append(timer)

        phases = [
            Phase("idle", IDLE_S, 0.0, measured=False),
            Phase("ramp", RAMP_S, args.rate, measured=False),
            Phase("steady", args.seconds, args.rate),
        ]
        rooms = [f"steady-{i}" for i in range(s.rooms_count)]
        cfg = bench.config(
            "steady", [stack.ws_url], s.rooms_users, phases, rooms=rooms, room_mode="spread",
            drain_s=5.0, connect_concurrency=200, connect_timeout_s=60 + s.rooms_users / 100,
        )  # fmt: skip
        starter = threading.Timer(IDLE_S + RAMP_S, steady_starts)
        result = run_load(cfg, pids, on_connected=starter.start)
        starter.join()
        for part in owned:
            if isinstance(part, subprocess.Popen):
                part.wait(30)  # py-spy writes its file when its duration is over
            else:
                part.join(30)
        admin.close()
    steady = next(p for p in result.phases if p.name == "steady")
    report(steady, commands, args.seconds)


def report(steady: PhaseResult, commands: dict[str, Any], seconds: float) -> None:
    """Print the steady phase: rates, latency, CPU per process and Redis commands per message."""
    sent = steady.per_s("sent") or 1.0
    c = steady.counts
    print(
        f"sent {sent:,.0f}/s, deliveries {steady.deliveries_per_s:,.0f}/s, "
        f"p50 {steady.p(50):.1f} ms, p99 {steady.p(99):.1f} ms; gaps {c.get('gaps', 0)}, "
        f"duplicates {c.get('duplicates', 0)}, reordered {c.get('reordered', 0)}"
    )
    cpu = cpu_per_message(steady)
    for name, pct in cpu["cpu_pct"].items():
        print(f"  {name:12} {pct:6.1f} % {cpu['us_per_msg'][name]:8.1f} µs/msg")
    print(f"  {'servers':12} {cpu['server_us_per_msg']:17.1f} µs/msg")
    messages = sent * seconds
    top = sorted(commands.items(), key=lambda kv: -kv[1]["usec"])[:15]
    for name, stat in top:
        print(
            f"  redis {name.removeprefix('cmdstat_'):18} {stat['calls'] / messages:5.2f} calls/msg"
            f" {stat['usec_per_call']:8.2f} µs/call {stat['usec'] / messages:7.1f} µs/msg"
        )


if __name__ == "__main__":
    main()
