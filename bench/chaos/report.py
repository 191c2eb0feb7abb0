"""The chaos run's markdown page: settings and seed, the counts, every fault with its recovery,
the issues with their evidence, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bench.chaos.records import ClientLog, FaultRecord
from bench.chaos.recovery import Recovery
from bench.chaos.settings import ChaosSettings
from bench.chaos.verify import Issue, Verdict


@dataclass(frozen=True)
class RunFacts:
    """What the run did besides the verdict's counts."""

    seed: int
    started: datetime  # wall clock when the traffic began
    t0: float  # the same moment, time.monotonic()
    elapsed_s: float  # stack start to verdict
    caught_up_s: float  # after the traffic: until every client was caught up (or the bound)
    lagging: list[str]  # clients still not caught up at the bound
    stored_wait_s: float
    reconnects: int
    problems: list[str]  # what failed besides the verdict (a part that did not come back)
    skipped: list[str]  # planned faults not injected: the traffic was over (earlier ones ran late)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _counts(v: Verdict, logs: list[ClientLog], facts: RunFacts) -> list[str]:
    refusals = ", ".join(f"{code} {n:,}" for code, n in v.refusals.items()) or "none"
    unrecovered = sum(log.unrecovered for log in logs)
    rejoins = sum(max(0, log.joins - 1) for log in logs)
    mark = "" if v.passed else " ⚠"
    return [
        "| count | value |",
        "|---|--:|",
        f"| sent | {v.sent:,} |",
        f"| acknowledged (echo with a seq) | {v.acked:,} |",
        f"| refused (error with the cid: {refusals}) | {v.refused:,} |",
        f"| unanswered (no reply: socket dropped, or none by the end) | {v.unanswered:,} |",
        f"| refused or unanswered, yet stored or delivered | {v.unacked_existing:,} |",
        f"| delivered (member x acknowledged message) | {v.delivered:,} of "
        f"{v.expected_deliveries:,} |",
        f"| received (every message the clients got, live or replayed) | {v.received:,} |",
        f"| stored (rows in `message`) | {v.stored:,} |",
        f"| rows in `message_conflict` | {v.conflicts:,} |",
        f"| **lost**{mark} (acknowledged, not stored or not delivered to a member) | "
        f"**{v.lost:,}** (rows missing {v.lost_rows:,}, deliveries missing "
        f"{v.lost_deliveries:,}) |",
        f"| **duplicated**{mark} | **{v.duplicated:,}** |",
        f"| **reused seq**{mark} (one room and seq, two texts) | **{v.reused:,}** |",
        f"| reordered{mark} (a lower seq after a higher one) | {v.reordered:,} |",
        f"| reconnects / rejoins with `since` / answered `recovered: false` | "
        f"{facts.reconnects:,} / {rejoins:,} / {unrecovered:,} |",
    ]


def _fault_table(recs: list[Recovery], t0: float) -> list[str]:
    lines = [
        "| # | planned (s) | at (s) | clock | fault | target | back after (s) "
        "| first ack after (s) | refused | unanswered | clients dropped | all back after (s) "
        "| detail |",
        "|--:|--:|--:|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for i, r in enumerate(recs, 1):
        f = r.fault
        lines.append(
            f"| {i} | {f.planned_at:.1f} | {f.at - t0:.1f} | {f.wall} | {f.kind} | {f.target} "
            f"| {_s(r.down_s)} | {_s(r.first_ack_s)} | {r.refused:,} | {r.unanswered:,} "
            f"| {r.dropped:,} | {_s(r.back_s) if r.dropped else '-'} | {f.detail} |"
        )
    return lines


def _context(issue: Issue, faults: list[FaultRecord], t0: float) -> str:
    """When the message was sent (or received), and the fault just before."""
    if issue.at is None:
        return ""
    before = [f for f in faults if f.at <= issue.at]
    text = f" ({issue.when} at {issue.at - t0:.2f} s"
    if before:
        f = before[-1]
        text += f", {issue.at - f.at:.2f} s after fault #{faults.index(f) + 1} {f.kind} {f.target}"
    return text + ")"


def report(
    s: ChaosSettings,
    v: Verdict,
    logs: list[ClientLog],
    recs: list[Recovery],
    facts: RunFacts,
) -> str:
    """The page."""
    failed = not v.passed or bool(facts.problems)
    faults = [r.fault for r in recs]
    kinds = ", ".join(s.faults)
    out = [
        f"# Chaos {facts.started:%Y-%m-%d %H:%M:%S}: {'FAIL' if failed else 'PASS'}",
        "",
        f"**Seed {facts.seed}** (again: `CHAOS_SEED={facts.seed} make chaos`, same settings).",
        "",
        f"- {s.seconds:g} s of traffic: {s.users} users in {s.rooms} rooms "
        f"({s.users // s.rooms} or more each), {s.rate:g} messages/s per user (Poisson), "
        "through nginx; each client reconnects after a drop and rejoins with `since`",
        f"- stack: {s.gateways} gateways, 1 persister, Redis {s.redis} (AOF, appendfsync "
        "everysec), MariaDB, nginx",
        f"- faults drawn from: {kinds}; "
        + (
            f"fixed schedule `{','.join(s.schedule)}`"
            if s.schedule
            else f"one every {s.fault_every_s:g} s on average (0.5x..1.5x), none in the first "
            f"{s.quiet_start_s:g} s nor the last {s.quiet_end_s:g} s"
        )
        + f"; a killed part stays down 0.5..{s.down_s:g} s",
        f"- settings: `{s.model_dump() | {'seed': facts.seed}}`",
        f"- after the traffic: clients caught up in {facts.caught_up_s:.1f} s, the store "
        f"settled in {facts.stored_wait_s:.1f} s; {facts.elapsed_s:.0f} s in all",
        "",
        "## Counts",
        "",
        *_counts(v, logs, facts),
        "",
        "Lost, duplicated and reused seq must be 0 (and reordered too) for a PASS.",
        "",
        "## Faults",
        "",
        "Times in seconds from the start of the traffic. *back after*: from the fault until the "
        "part was back and ready; *first ack after*: until the first echo of a message sent "
        "after the fault; *refused*, *unanswered*, *clients dropped*: from this fault to the "
        "next; *all back after*: until the last dropped client had rejoined.",
        "",
        *(_fault_table(recs, facts.t0) if recs else ["No fault was injected."]),
        "",
    ]
    if facts.skipped:
        out += [f"Not injected, the traffic was over: {', '.join(facts.skipped)}.", ""]
    if facts.lagging:
        shown = ", ".join(facts.lagging[:10])
        out += [f"Clients not caught up at the bound: {len(facts.lagging)} ({shown})", ""]
    if v.issues:
        out += ["## Issues (the first of each kind, with their evidence)", ""]
        out += [
            f"- {i.kind}: room {i.room} seq {i.seq}: {i.detail}{_context(i, faults, facts.t0)}"
            for i in v.issues
        ]
        out.append("")
    why = [
        f"{name} {n:,}"
        for name, n in (
            ("lost", v.lost),
            ("duplicated", v.duplicated),
            ("reused seq", v.reused),
            ("reordered", v.reordered),
        )
        if n
    ] + facts.problems
    out += [f"**Verdict: {'FAIL: ' + '; '.join(why) if failed else 'PASS'}**", ""]
    return "\n".join(out)
