"""The whole run: a stack, the clients, the faults on schedule, the drain, the verdict, and the
report written where ``CHAOS_OUT`` (or ``bench/results/chaos-<timestamp>.md``) says."""

from __future__ import annotations

import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.chaos.faults import inject, not_ready
from bench.chaos.records import FaultRecord
from bench.chaos.recovery import recoveries
from bench.chaos.report import RunFacts, report
from bench.chaos.schedule import plan
from bench.chaos.settings import ChaosSettings
from bench.chaos.store import read_rows, wait_stored
from bench.chaos.traffic import Traffic
from bench.chaos.verify import verify
from stack.processes import ROOT, free_port, wait_until
from stack.topology import Stack, StackConfig

JOIN_S = 60.0  # every client connected and joined before the traffic, at most this long


def say(text: str) -> None:
    """Progress, on stderr."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """Open files up to the hard limit (the clients, and the stack's processes inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _faults(
    stack: Stack, s: ChaosSettings, seed: int, t0: float
) -> tuple[list[FaultRecord], list[str]]:
    """Inject every planned fault at its time (a fault that runs late delays the next; none
    is injected once the traffic is over)."""
    done, skipped = [], []
    for p in plan(s, seed):
        time.sleep(max(0.0, t0 + p.at - time.monotonic()))  # the schedule is time-based
        if time.monotonic() >= t0 + s.seconds:  # the faults before ran that late
            say(f"t={time.monotonic() - t0:5.1f}s traffic over: {p.kind} at {p.at:g} s skipped")
            skipped.append(f"{p.kind} at {p.at:g} s")
            continue
        say(f"t={time.monotonic() - t0:5.1f}s fault: {p.kind} (down {p.down_s:g} s)")
        record = inject(stack, p)
        restored = "-" if record.restored_at is None else f"{record.restored_at - record.at:.1f}s"
        say(f"  {record.target} back after {restored} {record.detail}")
        done.append(record)
    return done, skipped


def chaos(s: ChaosSettings, seed: int, work: Path) -> tuple[str, bool]:
    """Run it all in ``work``: (the report, passed)."""
    began = time.monotonic()
    config = StackConfig(
        workdir=work / "stack", gateways=s.gateways, broker="redis", redis=s.redis,
        port=free_port(), env=s.chat_env(),
    )  # fmt: skip
    say(f"starting the stack: {s.gateways} gateways, redis {s.redis}")
    stack = Stack(config).start()
    run_id = f"{os.getpid():x}{int(time.time()) % 10**6:x}"
    traffic = Traffic(stack.ws_url, s.users, s.rooms, s.rate, seed, run_id)
    try:
        stack.wait_ready()
        traffic.start()
        wait_until(lambda: traffic.joined() == s.users, JOIN_S, "every client joined")
        say(f"{s.users} clients joined {s.rooms} rooms; traffic for {s.seconds:g} s")
        started = datetime.now()
        t0 = traffic.begin(s.seconds)
        faults, skipped = _faults(stack, s, seed, t0)
        time.sleep(max(0.0, t0 + s.seconds - time.monotonic()))  # the traffic's own length
        say("traffic over; waiting for the clients to catch up")
        drained = time.monotonic()
        lagging = traffic.lagging()
        while lagging and time.monotonic() - drained < s.drain_s:
            time.sleep(0.2)  # polling the clients' state: nothing to wait on across threads
            lagging = traffic.lagging()
        caught_up_s = time.monotonic() - drained
        # Checked while the clients are still connected: a gateway may be ready only empty.
        unready = not_ready(stack)
        traffic.stop()
        sends, logs, disconnects, errors = traffic.records()
        acked = sum(1 for x in sends if x.outcome == "acked")
        say(f"{len(sends):,} sent, {acked:,} acknowledged; waiting for the store")
        _, stored_wait_s = wait_stored(stack, acked, s.drain_s)
        rows, conflicts = read_rows(stack)
        verdict = verify(sends, logs, rows, conflicts)
        problems = [
            f"fault {f.kind} {f.target} did not recover ({f.detail})"
            for f in faults
            if f.restored_at is None
        ]
        if errors:
            problems.append(f"{len(errors)} client errors, the first: {'; '.join(errors[:3])}")
        problems += [f"at the end, {why}" for why in unready]
        facts = RunFacts(
            seed=seed, started=started, t0=t0, elapsed_s=time.monotonic() - began,
            caught_up_s=caught_up_s, lagging=lagging, stored_wait_s=stored_wait_s,
            reconnects=len(disconnects), problems=problems, skipped=skipped,
        )  # fmt: skip
        text = report(s, verdict, logs, recoveries(faults, sends, disconnects), facts)
        return text, verdict.passed and not problems
    finally:
        traffic.stop()
        stack.stop()


def main() -> None:
    """``python -m bench.chaos``: exit code 1 on FAIL."""
    s = ChaosSettings()
    seed = s.seed if s.seed is not None else random.SystemRandom().randrange(2**31)
    say(f"seed {seed} (CHAOS_SEED={seed} repeats this schedule)")
    raise_nofile()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(s.out) if s.out else ROOT / "bench" / "results" / f"chaos-{stamp}.md"
    if s.workdir:  # kept, with every process's log, for a post-mortem
        work = Path(s.workdir).resolve() / f"chaos-{stamp}"
        work.mkdir(parents=True)
        text, passed = chaos(s, seed, work)
    else:
        with tempfile.TemporaryDirectory(prefix="chat-chaos-") as tmp:
            text, passed = chaos(s, seed, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"report: {out}")
    say(f"seed {seed}: {'PASS' if passed else 'FAIL'}")
    raise SystemExit(0 if passed else 1)
