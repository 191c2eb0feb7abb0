"""The soak's markdown page: what ran, the snapshot table, what looks like a leak, the verdict."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bench.soak.client import ChurnStats
from bench.soak.leaks import RSS_GROWTH, flags
from bench.soak.probe import Snapshot
from bench.soak.settings import SoakSettings
from bench.soak.tables import snapshots, trend
from loadtests.runner import LoadResult
from loadtests.stats import nearest_rank


def _pct(values: list[float], q: float) -> str:
    return f"{nearest_rank(values, q):.1f}" if values else "-"


def _load_line(s: SoakSettings, result: LoadResult) -> str:
    m = result.measured
    sent = sum(p.counts.get("sent", 0) for p in result.phases)
    problems = result.problems()
    return (
        f"- steady load: {result.connected}/{s.users} users in {s.rooms} rooms, {sent:,} "
        f"messages sent, {m.deliveries_per_s:,.0f} deliveries/s, p99 {m.p(99):.1f} ms; "
        f"verification: {'clean' if not problems else 'FAILED ' + str(problems)}"
    )


def _churn_line(s: SoakSettings, churn: ChurnStats) -> str:
    rate = churn.launched / s.seconds if s.seconds else 0.0
    return (
        f"- churn: {churn.launched:,} clients ({rate:.1f}/s), {churn.ok:,} completed "
        f"({churn.clean:,} clean, {churn.abrupt:,} abrupt), {churn.echoed:,}/{churn.sent:,} "
        f"echoes, failures {dict(churn.failures) or 'none'}, skipped {churn.skipped}; "
        f"connect+join p50/p99 {_pct(churn.connect_ms, 50)}/{_pct(churn.connect_ms, 99)} ms, "
        f"echo p50/p99 {_pct(churn.echo_ms, 50)}/{_pct(churn.echo_ms, 99)} ms"
    )


def _store_line(problems: list[str], store: dict[str, Any]) -> str:
    rooms = ", ".join(
        f"{r} {v['rows']:,} rows seq {v['min']}..{v['max']} (redis {v['redis_seq']:,})"
        for r, v in store.get("rooms", {}).items()
    )
    return (
        f"- MariaDB: {store['stored']:,} rows for {store['sent']:,} messages "
        f"sent ({store['published']:,} seqs in Redis); per room {rooms}; "
        f"{'exactly once' if not problems else 'MISMATCH ' + str(problems)}; "
        f"participants still open: {store['participants_open']}"
    )


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
    """The page, from the idle/start/end snapshots and what the load, churn and store saw."""
    idle, start, end = snaps
    marks = flags(idle, start, end)
    out = [
        f"# Soak {datetime.now():%Y-%m-%d %H:%M:%S}",
        "",
        f"{s.gateways} gateways (redis broker), {s.seconds:g} s of traffic ({s.warmup_s:g} s "
        f"warm-up), {elapsed:.0f} s in all. Settings: `{s.model_dump()}`.",
        "",
        "- **idle**: stack up, no client; **start**: after the warm-up, under load; **end**: "
        f"traffic stopped, {s.settle_s:g} s later (every client gone).",
        _load_line(s, result),
        _churn_line(s, churn),
        _store_line(store_problems, store),
        "",
        snapshots(idle, start, end, marks),
        "",
    ]
    if marks:
        out += ["Suspicious (reported, not failed):", ""]
        out += [*(f"- {p} {m}: {why}" for (p, m), why in marks.items()), ""]
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
