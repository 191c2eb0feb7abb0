"""``python -m bench.soak`` (``make soak``): a bounded soak of the native stack, looking for leaks.

A stack (``SOAK_GATEWAYS`` = 3 gateways, Redis broker, a persister, MariaDB, nginx) gets steady
traffic from the load generator (``SOAK_USERS`` users spread over ``SOAK_ROOMS`` rooms, sending
``SOAK_RATE`` messages/s in all) and, at the same time, churn: ``SOAK_CHURN_PER_S`` short-lived
clients a second (websockets, through nginx) that join one of the rooms, send one message, wait
for its echo and leave, alternately cleanly (``leave`` + close 1000) and abruptly (the TCP
connection dropped without a close frame). Everything runs for ``SOAK_SECONDS`` (the first
``SOAK_WARMUP_S`` of them a warm-up).

Each service process is measured three times: idle (stack up, no client yet), start (after the
warm-up, under load) and end (traffic stopped, ``SOAK_SETTLE_S`` later): RSS and open files of
every process, ``chat_asyncio_tasks``/``chat_connections``/``chat_local_rooms`` of each gateway,
Redis's keys (by kind) and the persister's backlog. Suspicious growth is flagged, not failed.

The exit code is non-zero when verification fails: the load generator saw a gap, a duplicate or a
missing echo, a churn client lost its echo, or MariaDB does not hold exactly the messages sent
(per room: seq 1..N once each, N = the room's seq in Redis; in all: as many rows as sends).
The table goes to ``bench/results/soak-<timestamp>.md`` (``SOAK_OUT``: another file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis

from bench.run import Bench, scrape
from bench.settings import BenchSettings
from loadtests.procstats import ProcessSampler
from loadtests.runner import LoadConfig, LoadResult, run_load
from loadtests.stats import nearest_rank
from loadtests.worker import Phase, raise_nofile
from shared import keys
from shared.config import Settings
from stack.processes import ROOT, free_port
from stack.topology import Stack, StackConfig

RSS_GROWTH = 0.20  # RSS end/start above 1 + this is flagged
TASK_SLACK = 3  # gateway tasks this many above idle are tolerated (timers, pool housekeeping)
FD_SLACK = 10


@dataclass
class SoakSettings:
    seconds: float = 120.0  # traffic in all, warm-up included
    warmup_s: float = 5.0
    settle_s: float = 3.0
    users: int = 300
    rooms: int = 3
    rate: float = 50.0  # messages/s over all steady users
    churn_per_s: float = 20.0
    churn_timeout_s: float = 15.0  # one churn client's whole life, at most
    churn_inflight: int = 200
    gateways: int = 3
    workers: int = 1  # load-generator processes
    out: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SoakSettings:
        env = dict(os.environ if env is None else env)
        s = cls()
        for name, value in asdict(s).items():
            raw = env.get(f"SOAK_{name.upper()}")
            if raw is None or raw == "":
                continue
            setattr(s, name, type(value)(raw))
        s.warmup_s = min(s.warmup_s, s.seconds / 2)
        return s


# -- churn ----------------------------------------------------------------------------------


@dataclass
class ChurnStats:
    launched: int = 0
    ok: int = 0
    clean: int = 0
    abrupt: int = 0
    sent: int = 0  # send frames written
    echoed: int = 0
    skipped: int = 0  # not launched: too many still in flight
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)  # room → highest echoed seq
    connect_ms: list[float] = field(default_factory=list)  # connect + hello + joined
    echo_ms: list[float] = field(default_factory=list)  # send → own echo

    def fail(self, reason: str, detail: str) -> None:
        self.failures[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(detail)


class Refused(Exception):
    """The gateway answered a churn client's command with an ``error`` event."""


class Churn:
    """Short-lived clients at a fixed rate until a deadline, on an event loop of their own."""

    def __init__(self, url: str, rooms: list[str], s: SoakSettings) -> None:
        self.url = url
        self.rooms = rooms
        self.s = s
        self.stats = ChurnStats()
        self.run_id = f"{os.getpid():x}{int(time.time() * 1000) % 10**8:x}"
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, deadline: float) -> None:
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.run(deadline)), name="churn", daemon=True
        )
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(self.s.churn_timeout_s + 30)

    async def run(self, deadline: float) -> None:
        interval = 1.0 / self.s.churn_per_s if self.s.churn_per_s > 0 else None
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        next_at = time.monotonic()
        while interval is not None and time.monotonic() < deadline and not self.stop.is_set():
            if len(tasks) < self.s.churn_inflight:
                task = asyncio.create_task(self.client(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.stats.launched += 1
            else:
                self.stats.skipped += 1
            i += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=self.s.churn_timeout_s + 5)

    async def client(self, i: int) -> None:
        try:
            await asyncio.wait_for(self._client(i), self.s.churn_timeout_s)
        except TimeoutError:
            self.stats.fail("timeout", f"churn {i}: no answer within {self.s.churn_timeout_s}s")
        except Exception as exc:
            self.stats.fail(type(exc).__name__, f"churn {i}: {exc!r}")

    async def _client(self, i: int) -> None:
        from websockets.asyncio.client import connect

        st = self.stats
        user = f"soak-churn-{i}"
        room = self.rooms[i % len(self.rooms)]
        cid = f"churn-{self.run_id}-{i}"
        abrupt = i % 2 == 1
        t0 = time.monotonic()
        ws = await connect(f"{self.url}?user={user}", compression=None, max_size=None)
        try:
            await ws.send(orjson.dumps({"type": "join", "room": room}).decode())
            await self._until(ws, lambda e: e.get("type") == "joined" and e.get("room") == room)
            st.connect_ms.append(1000 * (time.monotonic() - t0))
            t1 = time.monotonic()
            send = {"type": "send", "room": room, "text": f"churn {i}", "cid": cid}
            await ws.send(orjson.dumps(send).decode())
            st.sent += 1
            try:
                echo = await self._until(
                    ws,
                    lambda e: e.get("type") == "message" and e.get("user") == user
                    and e.get("cid") == cid,
                )  # fmt: skip
            except Refused:
                st.sent -= 1  # refused: nothing was published
                raise
            st.echo_ms.append(1000 * (time.monotonic() - t1))
            st.echoed += 1
            seq = int(echo["seq"])
            st.last_seq[room] = max(st.last_seq.get(room, 0), seq)
            if abrupt:  # no leave, no close frame: the socket just goes away
                ws.transport.abort()
                st.abrupt += 1
            else:
                await ws.send(orjson.dumps({"type": "leave", "room": room}).decode())
                await self._until(ws, lambda e: e.get("type") == "left")
                await ws.close()
                st.clean += 1
            st.ok += 1
        finally:
            if ws.transport is not None and not ws.transport.is_closing():
                ws.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), 2)

    @staticmethod
    async def _until(ws: Any, want: Any) -> dict[str, Any]:
        """Read frames until an event matches ``want``; an ``error`` event raises."""
        while True:
            data = await ws.recv()
            frame = orjson.loads(data)
            for event in frame if isinstance(frame, list) else [frame]:
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "error":
                    raise Refused(f"error {event.get('code')}: {event.get('detail')}")
                if want(event):
                    return event


# -- measuring -------------------------------------------------------------------------------

Snapshot = dict[str, dict[str, float]]  # process → metric → value
GATEWAY_METRICS = {
    "chat_asyncio_tasks": "tasks",
    "chat_connections": "connections",
    "chat_local_rooms": "local_rooms",
}
KEY_KIND = re.compile(r"^chat:\{s\d+\}:([a-z_]+)")


def open_files(pid: int) -> int:
    """File descriptors of a process and its children (nginx workers)."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.num_fds()
    return total


def sockets(pid: int, own_port: int, redis_port: int) -> dict[str, float]:
    """A chat process's TCP sockets: from clients (nginx), to Redis, anything else."""
    counts = {"client_sockets": 0.0, "redis_sockets": 0.0, "other_sockets": 0.0}
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return counts
    for c in conns:
        if c.status == psutil.CONN_LISTEN:
            continue
        if c.laddr and c.laddr.port == own_port:
            counts["client_sockets"] += 1
        elif c.raddr and c.raddr.port == redis_port:
            counts["redis_sockets"] += 1
        else:
            counts["other_sockets"] += 1
    return counts


def redis_keys(client: redis.Redis) -> dict[str, float]:
    """Key count, keys by kind, keys without a TTL, memory."""
    names = [k.decode(errors="replace") for k in client.scan_iter(count=1000)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    ttls = pipe.execute() if names else []
    kinds: Counter[str] = Counter()
    for name in names:
        m = KEY_KIND.match(name)
        kind = m.group(1) if m else "other"
        if kind == "presence" and "#" in name:
            kind = "presence_user"
        kinds[kind] += 1
    info = client.info("memory")
    out: dict[str, float] = {
        "keys": float(client.dbsize()),
        "keys_without_ttl": float(sum(1 for t in ttls if t == -1)),
        "used_memory_mb": round(int(info["used_memory"]) / 2**20, 2),
    }
    for kind in ("seq", "log", "persist", "cid", "presence", "presence_user", "lock", "other"):
        out[f"keys:{kind}"] = float(kinds.get(kind, 0))
    return out


class Probe:
    """Takes snapshots of every service process of a stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pids = Bench.pids(stack)
        self.sampler = ProcessSampler(self.pids)
        self.redis = redis.Redis.from_url(stack.redis.url)

    def gateway_metrics(self) -> dict[str, dict[str, float]]:
        out = {}
        for i, g in enumerate(self.stack.gateways):
            values = scrape(g.url + "/metrics")
            out[f"gateway{i}"] = {
                short: values.get(name, float("nan")) for name, short in GATEWAY_METRICS.items()
            }
        return out

    def backlog(self) -> float:
        values = scrape(self.stack.persisters[0].url + "/metrics")
        return values.get("chat_persist_backlog", float("nan"))

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {}
        for name, pid in self.pids.items():
            snap[name] = {
                "rss_mb": round(self.sampler.rss(name) / 2**20, 1),
                "fds": float(open_files(pid)),
            }
        for name, values in self.gateway_metrics().items():
            snap[name].update(values)
        for i, g in enumerate(self.stack.gateways):
            if g.proc is not None:
                snap[f"gateway{i}"].update(
                    sockets(g.proc.pid, g.port, self.stack.redis_servers()[0].port)
                )
        snap["persister0"]["backlog"] = self.backlog()
        snap["redis"].update(redis_keys(self.redis))
        return snap

    def per_second(self) -> dict[str, float]:
        """Sampled every second of the run (``on_second``)."""
        out = {}
        for name, values in self.gateway_metrics().items():
            for metric, value in values.items():
                out[f"{name}.{metric}"] = value
        out["persister0.backlog"] = self.backlog()
        return out


# -- verification against MariaDB ------------------------------------------------------------


def verify_store(
    stack: Stack, rooms: list[str], sent: int, timeout: float = 60.0
) -> tuple[list[str], dict[str, Any]]:
    """Wait for the persister to catch up, then compare MariaDB with Redis's seqs and the sends."""
    client = redis.Redis.from_url(stack.redis.url)
    shards = Settings().shards
    problems: list[str] = []
    facts: dict[str, Any] = {"rooms": {}}
    head = {r: int(client.get(keys.seq(r, shards)) or 0) for r in rooms}
    facts["published"] = sum(head.values())
    deadline = time.monotonic() + timeout
    rows: dict[str, tuple[int, int, int, int]] = {}
    while True:
        rows = {}
        for r in rooms:
            got = stack.mariadb.query(
                "chat",
                "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq),0), COALESCE(MAX(seq),0)"
                " FROM message WHERE room_id=%s",
                r,
            )[0]
            rows[r] = (int(got[0]), int(got[1]), int(got[2]), int(got[3]))
        stored = sum(c for c, _, _, _ in rows.values())
        if stored >= facts["published"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    facts["stored"] = stored
    facts["sent"] = sent
    for r in rooms:
        count, distinct, low, high = rows[r]
        n = head[r]
        facts["rooms"][r] = {"redis_seq": n, "rows": count, "distinct": distinct,
                             "min": low, "max": high}  # fmt: skip
        if not (count == distinct == high == n and low == (1 if n else 0)):
            problems.append(
                f"{r}: {count} rows, {distinct} distinct seqs {low}..{high}, expected 1..{n}"
            )
    if stored != sent:
        problems.append(f"{stored} rows stored for {sent} messages sent")
    open_rows = stack.mariadb.query(
        "chat", "SELECT COUNT(*) FROM chat_participant WHERE exited_at IS NULL"
    )
    facts["participants_open"] = int(open_rows[0][0])
    return problems, facts


# -- the report ------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _delta(start: float | None, end: float | None) -> str:
    if start is None or end is None or start != start or end != end:
        return "-"
    d = end - start
    text = f"{d:+,.1f}" if not float(d).is_integer() else f"{int(d):+,}"
    if start:
        text += f" ({100 * d / start:+.0f} %)"
    return text


def flags(idle: Snapshot, start: Snapshot, end: Snapshot) -> dict[tuple[str, str], str]:
    """(process, metric) → why it looks like a leak."""
    out: dict[tuple[str, str], str] = {}
    for name, values in end.items():
        s, i = start.get(name, {}), idle.get(name, {})
        rss0, rss1 = s.get("rss_mb", 0.0), values.get("rss_mb", 0.0)
        if rss0 and rss1 > rss0 * (1 + RSS_GROWTH):
            out[(name, "rss_mb")] = f"RSS grew more than {RSS_GROWTH:.0%}"
        if name.startswith("gateway"):
            if values.get("connections", 0):
                out[(name, "connections")] = "connections left after every client went away"
            if values.get("local_rooms", 0):
                out[(name, "local_rooms")] = "rooms left after every client went away"
            if values.get("tasks", 0) > i.get("tasks", 0) + TASK_SLACK:
                out[(name, "tasks")] = f"tasks not back to idle ({_fmt(i.get('tasks'))})"
        # A gateway's Redis pool grows under load and stays: open files beyond it are suspect.
        pool0, pool1 = i.get("redis_sockets", 0.0), values.get("redis_sockets", 0.0)
        if name.startswith(("gateway", "nginx")) and (
            values.get("fds", 0) - pool1 > i.get("fds", 0) - pool0 + FD_SLACK
        ):
            out[(name, "fds")] = (
                f"open files not back to idle ({_fmt(i.get('fds'))}, Redis pool aside)"
            )
        if values.get("client_sockets", 0):
            out[(name, "client_sockets")] = "client sockets left after every client went away"
        if name == "persister0" and values.get("backlog", 0):
            out[(name, "backlog")] = "backlog not drained"
        if name == "redis":
            for kind in ("keys:presence", "keys:presence_user", "keys:lock"):
                if values.get(kind, 0):
                    out[(name, kind)] = "left after every client went away"
            if values.get("keys_without_ttl", 0) > s.get("keys_without_ttl", 0):
                out[(name, "keys_without_ttl")] = "keys without TTL grew"
    return out


def table(idle: Snapshot, start: Snapshot, end: Snapshot) -> tuple[str, list[str]]:
    marks = flags(idle, start, end)
    lines = [
        "| process | metric | idle | start | end | Δ start → end | flag |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for name, values in end.items():
        for metric, value in values.items():
            flag = marks.get((name, metric), "")
            lines.append(
                f"| {name} | {metric} | {_fmt(idle.get(name, {}).get(metric))} "
                f"| {_fmt(start.get(name, {}).get(metric))} | {_fmt(value)} "
                f"| {_delta(start.get(name, {}).get(metric), value)} "
                f"| {'⚠ ' + flag if flag else ''} |"
            )
    return "\n".join(lines), [f"{p} {m}: {why}" for (p, m), why in marks.items()]


def trend(result: LoadResult) -> str:
    """Under steady load: the first vs the last few seconds of the soak phase."""
    soak = next((p for p in result.phases if p.name == "soak"), None)
    if soak is None:
        return ""
    lines = [
        "| process | metric | first 5 s | last 5 s | Δ |",
        "|---|---|--:|--:|--:|",
    ]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    for name in sorted(soak.procs):
        if name.startswith("loadgen"):
            continue
        rss = [r / 2**20 for _, r in soak.procs[name]]
        if len(rss) >= 10:
            a, b = mean(rss[:5]), mean(rss[-5:])
            lines.append(f"| {name} | rss_mb | {a:.1f} | {b:.1f} | {_delta(a, b)} |")
    for key in sorted(soak.extras):
        values = soak.extras[key]
        if len(values) >= 10 and key.endswith((".tasks", ".connections", ".backlog")):
            name, metric = key.split(".", 1)
            a, b = mean(values[:5]), mean(values[-5:])
            lines.append(f"| {name} | {metric} | {a:.1f} | {b:.1f} | {_delta(a, b)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _pct(values: list[float], q: float) -> str:
    return f"{nearest_rank(values, q):.1f}" if values else "-"


def report(
    s: SoakSettings,
    snaps: tuple[Snapshot, Snapshot, Snapshot],
    result: LoadResult,
    churn: ChurnStats,
    store_problems: list[str],
    store: dict[str, Any],
    failures: list[str],
    elapsed: float,
) -> str:
    idle, start, end = snaps
    body, leak_flags = table(idle, start, end)
    m = result.measured
    sent = sum(p.counts.get("sent", 0) for p in result.phases)
    load_problems = result.problems()
    churn_rate = churn.launched / s.seconds if s.seconds else 0.0
    participants = store["participants_open"]
    out = [
        f"# Soak {datetime.now():%Y-%m-%d %H:%M:%S}",
        "",
        f"{s.gateways} gateways (redis broker), {s.seconds:g} s of traffic ({s.warmup_s:g} s "
        f"warm-up), {elapsed:.0f} s in all. Settings: `{asdict(s)}`.",
        "",
        "- **idle**: stack up, no client; **start**: after the warm-up, under load; **end**: "
        f"traffic stopped, {s.settle_s:g} s later (every client gone).",
        f"- steady load: {result.connected}/{s.users} users in {s.rooms} rooms, {sent:,} "
        f"messages sent, {m.deliveries_per_s:,.0f} deliveries/s, p99 {m.p(99):.1f} ms; "
        f"verification: {'clean' if not load_problems else 'FAILED ' + str(load_problems)}",
        f"- churn: {churn.launched:,} clients ({churn_rate:.1f}/s), {churn.ok:,} completed "
        f"({churn.clean:,} clean, {churn.abrupt:,} abrupt), {churn.echoed:,}/{churn.sent:,} "
        f"echoes, failures {dict(churn.failures) or 'none'}, skipped {churn.skipped}; "
        f"connect+join p50/p99 {_pct(churn.connect_ms, 50)}/{_pct(churn.connect_ms, 99)} ms, "
        f"echo p50/p99 {_pct(churn.echo_ms, 50)}/{_pct(churn.echo_ms, 99)} ms",
        f"- MariaDB: {store['stored']:,} rows for {store['sent']:,} messages "
        f"sent ({store['published']:,} seqs in Redis); per room "
        + ", ".join(
            f"{r} {v['rows']:,} rows seq {v['min']}..{v['max']} (redis {v['redis_seq']:,})"
            for r, v in store.get("rooms", {}).items()
        )
        + f"; {'exactly once' if not store_problems else 'MISMATCH ' + str(store_problems)}; "
        f"participants still open: {participants}",
        "",
        body,
        "",
    ]
    if leak_flags:
        out += ["Suspicious (reported, not failed):", "", *(f"- {f}" for f in leak_flags), ""]
    else:
        out += ["Nothing suspicious: every count back to idle, RSS within "
                f"+{RSS_GROWTH:.0%}.", ""]  # fmt: skip
    tr = trend(result)
    if tr:
        out += ["Under steady load (soak phase, per-second samples):", "", tr, ""]
    if churn.examples:
        out += ["Churn failures (first few):", "", *(f"- {e}" for e in churn.examples), ""]
    if result.anomalies:
        out += ["Load anomalies (first few):", "", *(f"- {a}" for a in result.anomalies[:5]), ""]
    out += [f"**Verdict: {'FAILED: ' + '; '.join(failures) if failures else 'verified'}**", ""]
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def soak(s: SoakSettings, work: Path) -> tuple[str, list[str]]:
    started = time.monotonic()
    config = StackConfig(
        workdir=work / "stack", gateways=s.gateways, broker="redis", port=free_port(),
        env=BenchSettings().chat_env(),  # the abuse limits opened up for one client host
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
        failures = [f"load: {p}" for p in result.problems()]
        failures += [f"churn: {n} {why}" for why, n in churn.stats.failures.items()]
        if churn.stats.echoed != churn.stats.sent:
            failures.append(f"churn: {churn.stats.sent - churn.stats.echoed} sends not echoed")
        failures += [f"store: {p}" for p in store_problems]
        text = report(s, (idle, start[0], end), result, churn.stats, store_problems, store,
                      failures, time.monotonic() - started)  # fmt: skip
        return text, failures
    finally:
        if churn is not None:
            churn.stop.set()
            churn.join()
        stack.stop()


def main() -> None:
    s = SoakSettings.from_env()
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


if __name__ == "__main__":
    main()
