"""``python -m bench.run`` (``make bench``): experiments 1-7 of issue 6 on the native stack.

Everything runs on 127.0.0.1: private redis/mariadb/persister/gateways/nginx per topology (the
same ``stack`` package as ``make stack``), the load generator of ``loadtests``, and the textbook
baseline in its own virtualenv. Each run is bounded in time and stops what it started.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prometheus_client.parser import text_string_to_metric_families

from bench.compare import part_compare
from bench.ladder import judges
from bench.persister import measure as persister_capacity
from bench.rooms import part_rooms
from bench.settings import BenchSettings
from loadtests.procstats import ProcessSampler
from loadtests.runner import LoadConfig, LoadResult, PhaseResult, run_load
from loadtests.stats import nearest_rank
from loadtests.worker import Phase, raise_nofile
from stack.processes import ROOT, Process, RedisServer, free_port, http_get
from stack.topology import Stack, StackConfig

BASELINE_VENV = ROOT / ".venv" / "baseline"  # inside .venv: ignored by git, removed by make clean


@dataclass
class Run:
    """One load run, as the report shows it."""

    experiment: str
    label: str
    gateways: int
    users: int
    rate: float
    result: LoadResult
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        m = self.result.measured
        procs = {
            name: {"cpu_pct": round(m.cpu(name)), "rss_mb": round(m.rss(name) / 2**20, 1)}
            for name in sorted(m.procs)
        }
        return {
            "experiment": self.experiment,
            "label": self.label,
            "gateways": self.gateways,
            "users": self.users,
            "offered_rate": self.rate,
            **m.summary(),
            "verified": self.result.ok,
            "problems": self.result.problems(),
            "anomalies": self.result.anomalies[:5],
            "processes": procs,
            "cdf": m.latency.cdf(),
            **self.notes,
        }


class BaselineApp(Process):
    """The textbook Starlette + broadcaster app under uvicorn, from its own virtualenv."""

    name = "baseline"

    def __init__(self, dir: Path, redis_url: str) -> None:
        super().__init__(dir)
        self.redis_url = redis_url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def command(self) -> list[str]:
        return [
            str(BASELINE_VENV / "bin" / "python"), "-m", "uvicorn",
            "loadtests.baseline.app:app", "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        import os

        return {**os.environ, "BASELINE_REDIS_URL": self.redis_url}

    def ready(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def ensure_baseline_venv() -> None:
    """Create ``.venv/baseline`` with the baseline's pinned requirements (once)."""
    marker = BASELINE_VENV / ".installed"
    requirements = ROOT / "loadtests" / "baseline" / "requirements.txt"
    if marker.exists() and marker.read_text() == requirements.read_text():
        return
    print("creating the baseline's virtualenv (.venv/baseline)…", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(BASELINE_VENV)], check=True)
    pip = [str(BASELINE_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    marker.write_text(requirements.read_text())


class Bench:
    def __init__(self, settings: BenchSettings, out: Path, work: Path) -> None:
        self.s = settings
        self.out = out
        self.work = work
        self.runs: list[Run] = []
        self.facts: dict[str, Any] = {}  # experiment results that are not a load run
        self.stacks = 0

    # -- helpers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def stack(
        self,
        gateways: int,
        broker: Literal["redis", "memory"] = "redis",
        persist: Literal["async", "sync"] = "async",
        redis: Literal["single", "cluster"] = "single",
    ) -> Iterator[Stack]:
        self.stacks += 1
        config = StackConfig(
            workdir=self.work / f"stack{self.stacks}",
            gateways=gateways,
            broker=broker,
            persist=persist,
            redis=redis,
            port=free_port(),
            env=self.s.chat_env(),
        )
        print(
            f"starting stack: {gateways} gateway(s), {broker} ({redis}), {persist}",
            file=sys.stderr,
        )
        stack = Stack(config).start()
        try:
            stack.wait_ready()
            yield stack
        finally:
            stack.stop()

    @staticmethod
    def pids(stack: Stack) -> dict[str, int]:
        out: dict[str, int] = {}
        servers = stack.redis_servers()
        for i, server in enumerate(servers):
            if server.proc is not None:
                out["redis" if len(servers) == 1 else f"redis{i}"] = server.proc.pid
        if stack.mariadb.proc is not None:
            out["mariadb"] = stack.mariadb.proc.pid
        for i, p in enumerate(stack.persisters):
            if p.proc is not None:
                out[f"persister{i}"] = p.proc.pid
        for i, g in enumerate(stack.gateways):
            if g.proc is not None:
                out[f"gateway{i}"] = g.proc.pid
        if stack.nginx is not None and stack.nginx.proc is not None:
            out["nginx"] = stack.nginx.proc.pid
        return out

    def config(self, label: str, urls: list[str], users: int, phases: list[Phase],
               **kw: Any) -> LoadConfig:  # fmt: skip
        kw.setdefault("rooms", [label])
        kw.setdefault("workers", self.s.workers)
        kw.setdefault("sample_every", self.s.sample_every)
        kw.setdefault("text_bytes", self.s.text_bytes)
        return LoadConfig(
            urls=urls, users=users, phases=phases, user_prefix=f"{label}-u", label=label, **kw
        )

    def steady(self, rate: float) -> list[Phase]:
        return [
            Phase("ramp", self.s.ramp_s, rate, measured=False),
            Phase("steady", self.s.duration_s, rate),
        ]

    def record(self, run: Run) -> Run:
        self.runs.append(run)
        m = run.result.measured
        verdict = "verified" if run.result.ok else f"FAILED {run.result.problems()}"
        print(
            f"== {run.label}: {m.deliveries_per_s:,.0f} deliveries/s, p99 {m.p(99):.1f} ms, "
            f"{verdict}",
            file=sys.stderr,
            flush=True,
        )
        return run

    def steady_run(self, exp: str, label: str, stack: Stack, users: int, rate: float,
                   **notes: Any) -> Run:  # fmt: skip
        cfg = self.config(label, [stack.ws_url], users, self.steady(rate))
        result = run_load(cfg, self.pids(stack))
        return self.record(Run(exp, label, len(stack.gateways), users, rate, result, notes))

    # -- experiments ----------------------------------------------------------------------

    @contextlib.contextmanager
    def attempt(self, what: str) -> Iterator[None]:
        """One experiment failing (a stack that will not start, a run that times out) is
        recorded in the report; the others still run."""
        try:
            yield
        except Exception as exc:
            self.facts.setdefault("failures", []).append(f"{what}: {exc!r}")
            print(f"!! {what} failed: {exc!r}", file=sys.stderr, flush=True)

    def run(self) -> None:
        for part in (self.part_one_gateway, self.part_three_gateways,
                     self.part_persister_capacity, self.part_sync,
                     self.part_memory, self.part_cluster, self.part_baseline,
                     self.part_rooms, self.part_compare):  # fmt: skip
            with self.attempt(part.__name__):
                part(set(self.s.experiments))

    def part_one_gateway(self, want: set[str]) -> None:
        if "6" in want or "1" in want:
            with self.stack(1) as stack:
                if "6" in want:
                    with self.attempt("experiment 6"):
                        self.idle(stack)
                if "1" in want:
                    for users in (self.s.users_small, self.s.users):
                        with self.attempt(f"experiment 1, 1 gateway, {users} users"):
                            self.steady_run("1", f"e1-1gw-{users}", stack, users, self.s.rate)

    def part_three_gateways(self, want: set[str]) -> None:
        if not want & {"1", "2", "3", "4", "5", "L"}:
            return
        with self.stack(3) as stack:
            if "L" in want:
                with self.attempt("low-latency"):
                    self.steady_run(
                        "L", "low-latency", stack, self.s.latency_users, self.s.latency_rate
                    )
            if "1" in want or "2" in want:
                for users in (self.s.users_small, self.s.users):
                    if users == self.s.users or "1" in want:
                        with self.attempt(f"experiment 1, 3 gateways, {users} users"):
                            self.steady_run(
                                "1", f"e1-3gw-{users}", stack, users, self.s.rate, persist="async"
                            )
            if "3" in want:
                with self.attempt("experiment 3, redis"):
                    self.cross(stack, "redis")
            if "4" in want or "5" in want:
                with self.attempt("experiments 4 and 5"):
                    self.peak(stack)

    def part_persister_capacity(self, want: set[str]) -> None:
        """Experiment S: the persister's capacity, ``make bench-persister`` on its own Redis and
        MariaDB (rows/s draining a backlog; one commit per message). The peak of experiment 5
        only shows whether the persister kept up with the rate offered there."""
        if "S" in want:
            capacity = persister_capacity(
                self.s.persister_rows, self.s.persister_sync_rows, self.work / "persister"
            )
            self.facts["persister_capacity"] = capacity
            print(f"== eS: {capacity}", file=sys.stderr, flush=True)

    def part_sync(self, want: set[str]) -> None:
        if "2" in want:
            with self.stack(3, persist="sync") as stack:
                # ascending: an overloaded run's queued sends must not spill into the next one
                for rate in sorted(set(self.s.sync_rates) | {self.s.rate}):
                    label = f"e2-sync-{self.s.users}"
                    if rate != self.s.rate:
                        label += f"-at-{rate:g}"
                    with self.attempt(f"experiment 2, sync at {rate:g} msgs/s"):
                        run = self.steady_run("2", label, stack, self.s.users, rate, persist="sync")
                        run.notes["unavailable_errors"] = run.result.measured.errors.get(
                            "unavailable", 0
                        ) + run.result.phases[-1].errors.get("unavailable", 0)

    def part_memory(self, want: set[str]) -> None:
        if "3" in want:
            with self.stack(3, broker="memory") as stack:
                self.cross(stack, "memory")

    def part_cluster(self, want: set[str]) -> None:
        """Experiment C: experiments 1 (3 gateways, big room) and 3 on a Redis Cluster."""
        if "C" in want:
            with self.stack(3, redis="cluster") as stack:
                with self.attempt("experiment C, cross-gateway on the cluster"):
                    self.cross(stack, "redis-cluster")
                with self.attempt(f"experiment C, 3 gateways, {self.s.users} users"):
                    self.steady_run(
                        "C", f"eC-cluster-{self.s.users}", stack, self.s.users, self.s.rate
                    )

    def part_rooms(self, want: set[str]) -> None:
        part_rooms(self, want)

    def part_compare(self, want: set[str]) -> None:
        part_compare(self, want)

    def part_baseline(self, want: set[str]) -> None:
        if "7" in want:
            self.baseline()

    def idle(self, stack: Stack) -> None:
        """Experiment 6: RSS per idle connection on one gateway (connected directly)."""
        n = self.s.idle_connections
        gateway = stack.gateways[0]
        assert gateway.proc is not None
        sampler = ProcessSampler({"gateway": gateway.proc.pid})
        time.sleep(1)
        before = sampler.rss("gateway")
        after: list[int] = []

        def measure() -> None:
            time.sleep(2)
            after.append(sampler.rss("gateway"))

        rooms = [f"idle-{i}" for i in range(max(1, n // self.s.idle_room_size))]
        cfg = self.config(
            "e6-idle", [gateway.ws_url], n, [Phase("hold", 3.0, 0.0)],
            rooms=rooms, room_mode="spread", senders=0, connect_concurrency=200, drain_s=1.0,
            connect_timeout_s=60 + n / 100,  # a slow machine takes longer to admit 10,000
        )  # fmt: skip
        result = run_load(cfg, self.pids(stack), on_connected=measure)
        per_conn = (after[0] - before) / max(1, result.connected) if after else 0.0
        self.facts["idle"] = {
            "connections": result.connected,
            "rooms": len(rooms),
            "rss_before_mb": round(before / 2**20, 1),
            "rss_after_mb": round(after[0] / 2**20, 1) if after else None,
            "rss_per_connection_kb": round(per_conn / 1024, 1),
            "verified": result.ok,
            "problems": result.problems(),
        }
        print(f"== e6: {self.facts['idle']}", file=sys.stderr, flush=True)

    def cross(self, stack: Stack, broker: str) -> None:
        """Experiment 3: one user per gateway (connected directly), all sending."""
        urls = [g.ws_url for g in stack.gateways]
        s = self.s
        # With the memory broker every gateway numbers the room on its own and nothing crosses
        # gateways: verification asks for each user's own echoes and gapless order per gateway.
        cfg = self.config(
            f"e3-{broker}", urls, s.cross_users,
            [Phase("ramp", 1.0, s.cross_rate, measured=False),
             Phase("steady", s.cross_s, s.cross_rate)],
            track_senders=True, sample_every=1, seq_per_gateway=broker == "memory",
        )  # fmt: skip
        result = run_load(cfg, self.pids(stack))
        run = self.record(Run("3", f"e3-{broker}", len(urls), s.cross_users, s.cross_rate, result))
        run.notes["broker"] = broker
        run.notes["cross_delivery_pct"] = (
            None if result.cross_delivery is None else round(100 * result.cross_delivery, 1)
        )
        run.notes["users_per_gateway"] = dict(result.gateways)

    def peak(self, stack: Stack) -> None:
        """Experiments 4 and 5: step the rate up until p99 or verification fails; persister
        rows/s and lag sampled every second; then every message checked in MariaDB."""
        s = self.s
        label = "e4-peak"
        persister = stack.persisters[0].url + "/metrics"
        last_rows: list[float] = []

        def on_second() -> dict[str, float]:
            values = scrape(persister)
            if "chat_persist_rows_written_total" not in values:
                return {}  # a missed scrape: no sample rather than a false zero
            rows = values["chat_persist_rows_written_total"]
            out = {"persist_lag_s": values.get("chat_persist_lag_seconds", 0.0)}
            if last_rows:
                out["persist_rows_per_s"] = rows - last_rows[-1]
            last_rows.append(rows)
            return out

        ok, go_on = judges(s.p99_ms, s.peak_strikes)

        phases = [Phase("ramp", s.ramp_s, s.peak_rates[0], measured=False)]
        phases += [Phase(f"{r:g}/s", s.step_s, r) for r in s.peak_rates]
        cfg = self.config(label, [stack.ws_url], s.users, phases, drain_s=10.0)
        result = run_load(cfg, self.pids(stack), on_second=on_second, phase_ok=go_on)
        steps = [p for p in result.phases if p.measured]
        rate = steps[-1].rate if steps else s.peak_rates[0]
        run = self.record(Run("4", label, len(stack.gateways), s.users, rate, result))
        _peak_notes(run, steps, ok)
        # Experiment 5: persister during the steps; then exactly-once in MariaDB.
        rows = [v for p in steps for v in p.extras.get("persist_rows_per_s", [])]
        lags = [v for p in steps for v in p.extras.get("persist_lag_s", [])]
        busy = [v for v in rows if v > 0]
        room = label
        expected = result.last_seq.get(room, 0)
        deadline = time.monotonic() + 120
        stored: tuple[Any, ...] = (0, 0, 0, 0)
        while time.monotonic() < deadline:
            stored = stack.mariadb.query(
                "chat",
                "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq),0), COALESCE(MAX(seq),0)"
                " FROM message WHERE room_id=%s",
                room,
            )[0]
            if stored[0] >= expected:
                break
            time.sleep(0.5)
        caught_up = time.monotonic() - (deadline - 120)
        self.facts["persister"] = {
            "samples": len(rows),
            "rows_per_s_mean": round(sum(rows) / len(rows)) if rows else 0,
            "rows_per_s_max": round(max(rows, default=0)),
            "rows_per_s_p50_busy": round(nearest_rank(busy, 50)) if busy else 0,
            "lag_p99_s": round(nearest_rank(lags, 99), 2),
            "lag_max_s": round(max(lags, default=0.0), 2),
            "messages_published": expected,
            "rows": int(stored[0]),
            "distinct_seqs": int(stored[1]),
            "exactly_once": int(stored[0]) == int(stored[1]) == expected == int(stored[3])
            and (expected == 0 or int(stored[2]) == 1),
            "seconds_to_catch_up_after_run": round(caught_up, 1),
        }
        print(f"== e5: {self.facts['persister']}", file=sys.stderr, flush=True)

    def baseline(self) -> None:
        """Experiment 7: the same peak search against the textbook app (one uvicorn process)."""
        s = self.s
        ensure_baseline_venv()
        redis = RedisServer(self.work / "baseline-redis").start()
        app = BaselineApp(self.work / "baseline", redis.url)
        try:
            app.start()
            assert app.proc is not None and redis.proc is not None

            def ok(phase: PhaseResult) -> bool:  # reordering is reported, not a failure here
                return phase.p(99) <= s.p99_ms and phase.clean(allow_reorder=True)

            phases = [Phase("ramp", s.ramp_s, s.baseline_rates[0], measured=False)]
            phases += [Phase(f"{r:g}/s", s.step_s, r) for r in s.baseline_rates]
            cfg = self.config("e7-baseline", [app.ws_url], s.users, phases, allow_reorder=True,
                              drain_s=10.0)  # fmt: skip
            pids = {"baseline": app.proc.pid, "redis": redis.proc.pid}
            result = run_load(cfg, pids, phase_ok=ok)
            steps = [p for p in result.phases if p.measured]
            rate = steps[-1].rate if steps else s.baseline_rates[0]
            run = self.record(Run("7", "e7-baseline", 1, s.users, rate, result))
            _peak_notes(run, steps, ok)
        finally:
            app.stop()
            redis.stop()


def _peak_notes(run: Run, steps: list[PhaseResult], ok: Any) -> None:
    """Every step, the highest step that held (``peak``) and, held or not, the best step."""
    held = [p for p in steps if ok(p)]
    best = max(held, key=lambda p: p.deliveries_per_s, default=None)
    run.notes["steps"] = [_step(p, ok(p)) for p in steps]
    run.notes["peak"] = _step(best, True) if best else None
    clean = [p for p in steps if p.clean(allow_reorder=run.result.config.allow_reorder)]
    pool = held or clean or steps  # the best numbers even when no step held
    top = max(pool, key=lambda p: p.deliveries_per_s, default=None)
    run.notes["best_step"] = _step(top, ok(top)) if top else None
    run.notes["stopped_after"] = run.result.stopped_after


def _step(p: PhaseResult, held: bool) -> dict[str, Any]:
    return {
        "step": p.name,
        "rate": p.rate,
        "sent_per_s": round(p.per_s("sent")),
        "deliveries_per_s": round(p.deliveries_per_s),
        "p50_ms": round(p.p(50), 1),
        "p99_ms": round(p.p(99), 1),
        "gaps": p.counts.get("gaps", 0),
        "duplicates": p.counts.get("duplicates", 0),
        "errors": sum(p.errors.values()),
        "clean": p.clean(allow_reorder=True),
        "reordered": p.counts.get("reordered", 0),
        "held": held,
    }


def scrape(url: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page (``{}`` if it cannot be read)."""
    try:
        status, body = http_get(url, timeout=2)
    except OSError:
        return {}
    out: dict[str, float] = {}
    if status != 200:
        return out
    # The parser is lazy: a malformed line ends the page, keeping the samples before it.
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(body.decode(errors="replace")):
            out.update((s.name, s.value) for s in family.samples if not s.labels)
    return out


def main() -> None:
    from bench.report import write_report

    settings = BenchSettings()
    raise_nofile()  # the gateways inherit it (10,000 idle connections)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(settings.out) if settings.out else ROOT / "bench" / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as work:
        bench = Bench(settings, out, Path(work))
        try:
            bench.run()
        finally:
            elapsed = time.monotonic() - started
            data = {
                "settings": settings.model_dump(),
                "chat_env": settings.chat_env(),
                "elapsed_s": round(elapsed),
                "runs": [r.row() for r in bench.runs],
                "facts": bench.facts,
            }
            (out / "results.json").write_text(json.dumps(data, indent=2, default=str))
            summary = write_report(out, data)
    print(summary)
    print(f"\nreport: {out / 'report.md'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
