"""The whole soak: a stack, steady load with churn on top, three snapshots, the store check, and
the report written where ``SOAK_OUT`` (or ``bench/results/soak-<timestamp>.md``) says."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.settings import chat_env
from bench.soak.churn import Churn
from bench.soak.probe import Probe, Snapshot
from bench.soak.report import report
from bench.soak.settings import SoakSettings
from bench.soak.store import verify_store
from loadtests.runner import LoadConfig, LoadResult, run_load
from loadtests.worker import Phase, raise_nofile
from stack.processes import ROOT, free_port
from stack.topology import Stack, StackConfig


def say(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


def _failures(result: LoadResult, churn: Churn, store_problems: list[str]) -> list[str]:
    """Everything that fails the soak (leaks are only flagged)."""
    failures = [f"load: {p}" for p in result.problems()]
    failures += [f"churn: {n} {why}" for why, n in churn.stats.failures.items()]
    if churn.stats.echoed != churn.stats.sent:
        failures.append(f"churn: {churn.stats.sent - churn.stats.echoed} sends not echoed")
    failures += [f"store: {p}" for p in store_problems]
    return failures


def soak(s: SoakSettings, work: Path) -> tuple[str, list[str]]:
    """Run the soak in ``work``: (the report, the failures)."""
    started = time.monotonic()
    config = StackConfig(
        workdir=work / "stack", gateways=s.gateways, broker="redis", port=free_port(),
        env=chat_env(),  # the abuse limits opened up for one client host
    )  # fmt: skip
    say(f"starting stack: {s.gateways} gateways, redis")
    stack = Stack(config).start()
    churn: Churn | None = None
    try:
        stack.wait_ready()
        probe = Probe(stack)
        time.sleep(1)
        idle = probe.snapshot()
        rooms = [f"soak-{i}" for i in range(s.rooms)]
        churn = Churn(stack.ws_url, rooms, s)
        start: list[Snapshot] = []
        begun: list[float] = []

        def on_connected() -> None:
            begun.append(time.monotonic() + 0.2)  # when the runner starts the phases
            assert churn is not None
            churn.start(begun[0] + s.seconds)

        def on_second() -> dict[str, float]:
            if not start and begun and time.monotonic() >= begun[0] + s.warmup_s:
                start.append(probe.snapshot())
                say("start snapshot taken")
            return probe.per_second()

        cfg = LoadConfig(
            urls=[stack.ws_url], users=s.users, rooms=rooms, room_mode="spread",
            phases=[Phase("warmup", s.warmup_s, s.rate, measured=False),
                    Phase("soak", s.seconds - s.warmup_s, s.rate)],
            workers=s.workers, user_prefix="soak-u", label="soak", sample_every=5,
        )  # fmt: skip
        result = run_load(cfg, probe.pids, on_second=on_second, on_connected=on_connected)
        churn.join()
        if not start:  # a run too short for the warm-up: the snapshot comes late
            start.append(probe.snapshot())
        time.sleep(s.settle_s)
        end = probe.snapshot()
        sent = sum(p.counts.get("sent", 0) for p in result.phases) + churn.stats.sent
        store_problems, store = verify_store(stack, rooms, sent)
        end["persister0"]["backlog"] = probe.backlog()  # after the wait for the store
        failures = _failures(result, churn, store_problems)
        text = report(s, (idle, start[0], end), result, churn.stats, store_problems, store,
                      failures, time.monotonic() - started)  # fmt: skip
        return text, failures
    finally:
        if churn is not None:
            churn.stop.set()
            churn.join()
        stack.stop()


def main() -> None:
    """``python -m bench.soak``: exit code 1 when verification failed."""
    s = SoakSettings()
    raise_nofile()  # the gateways and nginx inherit it
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(s.out) if s.out else ROOT / "bench" / "results" / f"soak-{stamp}.md"
    with tempfile.TemporaryDirectory(prefix="chat-soak-") as work:
        text, failures = soak(s, Path(work))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"report: {out}")
    raise SystemExit(1 if failures else 0)
