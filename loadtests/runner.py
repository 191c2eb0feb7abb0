"""Runs the worker processes, prints a live progress line, and sums what they report into
per-phase results (ramp phases excluded from the totals) and a final verification."""

from __future__ import annotations

import math
import multiprocessing
import queue as queue_mod
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from loadtests.procstats import ProcessSampler
from loadtests.stats import LatencyHistogram, nearest_rank
from loadtests.verify import Tally
from loadtests.worker import Phase, UserSpec, WorkerSpec, raise_nofile, worker_main

COUNTERS = Tally.COUNTERS


@dataclass
class LoadConfig:
    urls: list[str]  # /ws endpoints; user i connects to urls[i % len(urls)]
    users: int
    phases: list[Phase]
    rooms: list[str] = field(default_factory=lambda: ["bench"])
    room_mode: Literal["all", "spread"] = "all"  # every user in every room, or user i in room i%n
    rooms_per_user: int = 1  # "spread": user i is in rooms (i*k .. i*k+k-1) % n
    join_by_command: bool = False  # "spread", k > 1: rooms after the first joined with ``join``
    senders: int | None = None  # how many users send (None: all)
    workers: int = 2
    text_bytes: int = 32
    sample_every: int = 10  # latency of every k-th delivered message
    track_senders: bool = False  # per-sender counts (cross-gateway %), forces the slow path
    allow_reorder: bool = False  # reordered seqs reported but not a failure (the baseline)
    seq_per_gateway: bool = False  # seq is per gateway (memory broker): tails compared per gateway
    client: str = "picows"
    connect_concurrency: int = 64
    connect_timeout_s: float = 60.0
    drain_s: float = 5.0
    user_prefix: str = "u"
    progress: bool = True
    label: str = ""

    def user_specs(self) -> list[UserSpec]:
        senders = self.users if self.senders is None else self.senders
        specs = []
        for i in range(self.users):
            if self.room_mode == "all":
                rooms = tuple(self.rooms)
            elif self.rooms:  # k consecutive rooms each: every room gets users*k/n members
                k = self.rooms_per_user
                rooms = tuple(self.rooms[(i * k + m) % len(self.rooms)] for m in range(k))
            else:
                rooms = ()
            later = rooms[1:] if self.join_by_command else ()
            name, url = f"{self.user_prefix}{i}", self.urls[i % len(self.urls)]
            specs.append(UserSpec(name, url, rooms, i < senders, later))
        return specs


@dataclass
class PhaseResult:
    name: str
    seconds: float
    rate: float
    measured: bool
    counts: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    procs: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # per-second samples
    extras: dict[str, list[float]] = field(default_factory=dict)  # per-second on_second values

    def per_s(self, counter: str) -> float:
        return self.counts.get(counter, 0) / self.seconds if self.seconds else 0.0

    @property
    def deliveries_per_s(self) -> float:
        return self.per_s("delivered")

    def p(self, q: float) -> float:
        return self.latency.percentile(q)

    def cpu(self, name: str) -> float:
        samples = self.procs.get(name, [])
        return sum(c for c, _ in samples) / len(samples) if samples else 0.0

    def rss(self, name: str) -> int:
        return max((r for _, r in self.procs.get(name, [])), default=0)

    def clean(self, allow_reorder: bool = False) -> bool:
        c = self.counts
        bad = c.get("duplicates", 0) + c.get("unexpected", 0)
        if not allow_reorder:  # with reordering allowed, a gap may fill later: loss is judged
            bad += c.get("reordered", 0) + c.get("gaps", 0)  # at the end (``lost``)
        return bad == 0 and not self.errors and not self.closes

    def merge(self, other: PhaseResult) -> None:
        self.seconds += other.seconds
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.latency.merge(other.latency)
        self.errors.update(other.errors)
        self.closes.update(other.closes)
        for name, samples in other.procs.items():
            self.procs.setdefault(name, []).extend(samples)
        for name, values in other.extras.items():
            self.extras.setdefault(name, []).extend(values)

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "seconds": round(self.seconds, 1),
            "rate": self.rate,
            "sent_per_s": round(self.per_s("sent")),
            "echoed_per_s": round(self.per_s("echoed")),
            "deliveries_per_s": round(self.deliveries_per_s),
            "frames_per_s": round(self.per_s("frames")),
            "mb_per_s": round(self.per_s("bytes") / 1e6, 2),
            "p50_ms": round(self.p(50), 2),
            "p95_ms": round(self.p(95), 2),
            "p99_ms": round(self.p(99), 2),
            "max_ms": round(self.latency.max, 1),
            "latency_samples": self.latency.count,
            **{k: self.counts.get(k, 0) for k in ("gaps", "duplicates", "reordered")},
            "errors": dict(self.errors),
            "closes": dict(self.closes),
        }


@dataclass
class LoadResult:
    config: LoadConfig
    phases: list[PhaseResult]
    connected: int = 0
    connect_failed: int = 0
    connect_errors: list[str] = field(default_factory=list)
    lost: int = 0  # seqs skipped and never received
    tail_missing: int = 0  # open users whose last seq is behind the room's last seq
    missing_echoes: int = 0
    open_at_end: int = 0
    gateways: Counter[str] = field(default_factory=Counter)  # users per gateway (from hello)
    cross_delivery: float | None = None  # share of other users' messages received
    last_seq: dict[str, int] = field(default_factory=dict)
    stopped_after: str | None = None  # phase after which phase_ok said stop
    worker_failures: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)  # the first verification failures seen

    @property
    def measured(self) -> PhaseResult:
        """All measured phases merged (ramp excluded)."""
        out = PhaseResult("measured", 0.0, 0.0, True)
        for phase in self.phases:
            if phase.measured:
                out.merge(phase)
        if out.seconds:
            out.rate = out.per_s("sent")
        return out

    def problems(self) -> list[str]:
        found = []
        totals = PhaseResult("all", 0.0, 0.0, True)
        for phase in self.phases:
            totals.merge(phase)
        c = totals.counts
        for key in ("duplicates", "unexpected"):
            if c.get(key):
                found.append(f"{key}={c[key]}")
        if not self.config.allow_reorder:
            for key in ("gaps", "reordered"):
                if c.get(key):
                    found.append(f"{key}={c[key]}")
        if self.lost:
            found.append(f"lost={self.lost}")
        if self.tail_missing:
            found.append(f"tail_missing={self.tail_missing}")
        if self.missing_echoes:
            found.append(f"missing_echoes={self.missing_echoes}")
        if self.connect_failed:
            found.append(f"connect_failed={self.connect_failed}")
        if totals.errors:
            found.append(f"errors={dict(totals.errors)}")
        if totals.closes:
            found.append(f"closes={dict(totals.closes)}")
        found.extend(f"worker: {f}" for f in self.worker_failures)
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_load(
    config: LoadConfig,
    processes: dict[str, int] | None = None,
    on_second: Callable[[], dict[str, float]] | None = None,
    phase_ok: Callable[[PhaseResult], bool] | None = None,
    on_connected: Callable[[], None] | None = None,
) -> LoadResult:
    """Connect every user, run the phases, drain, and return the verified result.

    ``processes`` (name → pid) are sampled once a second; ``on_second`` adds values of its own
    (e.g. a persister's rows/s) to each phase; ``phase_ok`` is asked after each phase and can
    stop the run early (the peak search); ``on_connected`` runs once everyone is connected.
    """
    raise_nofile()
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    start_at: Any = ctx.Value("d", 0.0, lock=False)
    stop_at: Any = ctx.Value("d", math.inf, lock=False)
    specs = config.user_specs()
    total_senders = sum(1 for s in specs if s.sends)
    n_workers = max(1, min(config.workers, len(specs) or 1))
    workers = []
    for w in range(n_workers):
        spec = WorkerSpec(
            index=w,
            users=specs[w::n_workers],
            phases=config.phases,
            total_senders=total_senders,
            text_bytes=config.text_bytes,
            sample_every=config.sample_every,
            track_senders=config.track_senders,
            client=config.client,
            connect_concurrency=config.connect_concurrency,
            connect_timeout_s=config.connect_timeout_s,
            drain_s=config.drain_s,
        )
        proc = ctx.Process(target=worker_main, args=(spec, queue, start_at, stop_at), daemon=True)
        proc.start()
        workers.append(proc)
    result = LoadResult(config, [])
    try:
        _run(config, result, workers, queue, start_at, stop_at, processes or {}, on_second,
             phase_ok, on_connected)  # fmt: skip
    finally:
        stop_at.value = time.monotonic()
        start_at.value = start_at.value or time.monotonic()
        for proc in workers:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return result


def _run(
    config: LoadConfig,
    result: LoadResult,
    workers: list[Any],
    queue: Any,
    start_at: Any,
    stop_at: Any,
    processes: dict[str, int],
    on_second: Callable[[], dict[str, float]] | None,
    phase_ok: Callable[[PhaseResult], bool] | None,
    on_connected: Callable[[], None] | None,
) -> None:
    n = len(workers)
    say = _progress if config.progress else (lambda _line: None)
    label = f"[{config.label}] " if config.label else ""
    # 1. connect
    t_connect = time.monotonic()
    connected = 0
    waiting = n
    deadline = t_connect + config.connect_timeout_s + 60
    while waiting:
        msg = _get(queue, deadline)
        if msg is None:
            raise TimeoutError("workers did not finish connecting")
        if msg[0] == "connected":
            waiting -= 1
            connected += msg[2]
            result.connect_failed += msg[3]
        elif msg[0] == "failed":
            raise RuntimeError(f"load worker {msg[1]} failed: {msg[2]}")
    result.connected = connected
    say(f"{label}connected {connected}/{config.users} users in "
        f"{time.monotonic() - t_connect:.1f}s ({result.connect_failed} failed)")  # fmt: skip
    if on_connected is not None:
        on_connected()
    sampler = ProcessSampler({**processes, **{f"loadgen{i}": p.pid for i, p in enumerate(workers)}})
    # 2. phases
    phases = [PhaseResult(p.name, p.seconds, p.rate, p.measured) for p in config.phases]
    drain = PhaseResult("drain", config.drain_s, 0.0, False)
    every = [*phases, drain]
    t0 = time.monotonic() + 0.2
    bounds = []
    t = t0
    for p in config.phases:
        t += p.seconds
        bounds.append(t)
    start_at.value = t0
    last_cum: list[dict[str, Any]] = [{} for _ in range(n)]
    second = {k: 0 for k in COUNTERS}
    second_latency = LatencyHistogram()
    finals = 0
    checked = 0
    next_tick = t0 + 1.1  # just after the workers' aligned snapshots
    end_deadline = t + config.drain_s + 60
    stopped = False
    while finals < n:
        msg = _get(queue, min(next_tick, end_deadline))
        now = time.monotonic()
        if msg is not None:
            kind = msg[0]
            if kind == "snap":
                _, w, index, snap = msg
                target = every[min(index, len(every) - 1)]
                _add_delta(target, last_cum[w], snap, second)
                second_latency.merge(snap["latency"])
                target.latency.merge(snap["latency"])
                last_cum[w] = snap
                for text in snap["anomalies"]:
                    if text not in result.anomalies and len(result.anomalies) < 20:
                        result.anomalies.append(text)
            elif kind == "final":
                finals += 1
                _final(result, msg[2])
            elif kind == "failed":
                result.worker_failures.append(f"{msg[1]}: {msg[2]}")
                finals += 1
        elif now >= end_deadline:
            result.worker_failures.append("timed out waiting for workers")
            break
        if now >= next_tick:
            next_tick += 1
            current = sum(1 for b in bounds if now >= b)
            phase = every[min(current, len(every) - 1)]
            for name, sample in sampler.sample().items():
                phase.procs.setdefault(name, []).append(sample)
            extras = on_second() if on_second is not None else {}
            for name, value in extras.items():
                phase.extras.setdefault(name, []).append(value)
            cpu = " ".join(
                f"{k}={c:.0f}%" for k, (c, _) in ((k, v[-1]) for k, v in phase.procs.items())
            )
            say(
                f"{label}{now - t0:5.0f}s {phase.name:>10} sent/s={second['sent']:<6} "
                f"deliv/s={second['delivered']:<8} frames/s={second['frames']:<6} "
                f"MB/s={second['bytes'] / 1e6:5.1f} p99={second_latency.percentile(99):6.1f}ms "
                f"gaps={second['gaps']} dups={second['duplicates']} cpu: {cpu}"
            )
            second = dict.fromkeys(COUNTERS, 0)
            second_latency = LatencyHistogram()
        # 3. the early stop of a peak search, judged once a phase's last snapshots are in
        while not stopped and checked < len(bounds) and now >= bounds[checked] + 0.5:
            phase_done = phases[checked]  # the ramp is never judged: it is not a step
            judge = phase_ok is not None and phase_done.measured and checked < len(bounds) - 1
            if judge and phase_ok is not None and not phase_ok(phase_done):
                stop_at.value = now
                stopped = True
                result.stopped_after = phases[checked].name
            checked += 1
    keep = len(phases)
    if result.stopped_after is not None:
        keep = [p.name for p in phases].index(result.stopped_after) + 1
    result.phases = phases[:keep]
    if stopped:  # the aborted phase's frames still count toward verification, not throughput
        for aborted in phases[keep:]:
            drain.merge(_only_verification(aborted))
    result.phases.append(drain)
    _tail(result)


def _only_verification(p: PhaseResult) -> PhaseResult:
    out = PhaseResult(p.name, 0.0, 0.0, False)
    out.counts = {k: v for k, v in p.counts.items() if k in ("gaps", "duplicates", "unexpected",
                                                             "reordered")}  # fmt: skip
    out.errors, out.closes = p.errors, p.closes
    return out


def _get(queue: Any, until: float) -> Any:
    timeout = max(0.0, until - time.monotonic())
    try:
        return queue.get(timeout=timeout)
    except queue_mod.Empty:
        return None


def _add_delta(
    target: PhaseResult, last: dict[str, Any], snap: dict[str, Any], second: dict[str, int]
) -> None:
    for key in COUNTERS:
        delta = snap[key] - last.get(key, 0)
        target.counts[key] = target.counts.get(key, 0) + delta
        second[key] += delta
    for attr, key in (("errors", "errors"), ("closes", "closes")):
        before = last.get(key, {})
        counter: Counter[Any] = getattr(target, attr)
        for code, count in snap[key].items():
            if count - before.get(code, 0):
                counter[code] += count - before.get(code, 0)


def _final(result: LoadResult, final: dict[str, Any]) -> None:
    result.connect_failed += 0  # counted at connect time
    result.connect_errors.extend(final["connect_errors"])
    users: list[dict[str, Any]] = result.__dict__.setdefault("_users", [])
    users.extend(final["users"])


def _tail(result: LoadResult) -> None:
    """Whole-run checks over every user: lost seqs, tails behind the room, unechoed sends."""
    users: list[dict[str, Any]] = result.__dict__.pop("_users", [])
    per_gateway = result.config.seq_per_gateway

    def key(u: dict[str, Any], room: str) -> str:
        return f"{u['gateway']}/{room}" if per_gateway else room

    last: dict[str, int] = {}
    for u in users:
        for room, seq in u["last"].items():
            last[key(u, room)] = max(last.get(key(u, room), 0), seq)
    result.last_seq = last
    for u in users:
        result.gateways[u["gateway"]] += 1
        result.lost += u["missing"]
        if u["open"]:
            result.open_at_end += 1
            result.missing_echoes += u["pending"]
            result.tail_missing += sum(last[key(u, r)] - s for r, s in u["last"].items())
    if result.config.track_senders:
        sent = {u["user"]: u["sent"] for u in users}
        expected = got = 0
        for u in users:
            for other, count in sent.items():
                if other != u["user"] and count:
                    expected += count
                    got += min(count, (u["senders"] or {}).get(other, 0))
        result.cross_delivery = got / expected if expected else None


def lag_percentile(values: list[float], q: float = 99) -> float:
    """Percentile of per-second samples (persister lag)."""
    return nearest_rank(values, q)
