"""``bench.report``: report.md and its charts from a results dict, each experiment's share in its
place, and a chart failure that keeps the numbers; experiments R (small rooms), P (side by side
with the Socket.IO peers) and S (the persister's capacity, run inside ``make bench``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import __main__ as report_main
from bench.report import document
from bench.report.experiments import EXPERIMENTS, Experiment
from bench.report.experiments.rooms import idle_text, persister_text
from bench.report.markdown import table
from bench.report.results import Results, Row
from bench.run import Bench, Run, _peak_notes
from bench.settings import BenchSettings
from loadtests.runner import LoadConfig, LoadResult, PhaseResult
from loadtests.worker import Phase


def phase(name: str, rate: float, measured: bool = True, ms: float = 5.0) -> PhaseResult:
    p = PhaseResult(name, 10.0, rate, measured)
    p.counts = {"sent": int(rate * 10), "echoed": int(rate * 10), "delivered": int(rate * 1000)}
    for i in range(100):
        p.latency.add(ms * (1 + i / 100))
    p.procs = {"gateway0": [(i * 0.5, 50_000_000) for i in range(5)]}
    return p


def result(phases: list[PhaseResult], **kw: Any) -> LoadResult:
    config = LoadConfig(urls=["ws://x"], users=10, phases=[Phase(p.name, 1, 1) for p in phases])
    return LoadResult(config, phases, connected=10, **kw)


@pytest.fixture
def data() -> Results:
    s = BenchSettings()
    u, us = s.users, s.users_small
    runs = [
        Run("1", f"e1-1gw-{us}", 1, us, s.rate, result([phase("steady", s.rate)])),
        Run("1", f"e1-1gw-{u}", 1, u, s.rate, result([phase("steady", s.rate)])),
        Run("1", f"e1-3gw-{u}", 3, u, s.rate, result([phase("steady", s.rate)])),
        Run("2", f"e2-sync-{u}", 3, u, s.rate, result([phase("steady", s.rate)]),
            {"unavailable_errors": 3}),
        Run("3", "e3-memory", 3, 3, 30.0, result([phase("steady", 30)], cross_delivery=0.0),
            {"cross_delivery_pct": 0.0}),
        Run("L", "low-latency", 3, 100, 50.0, result([phase("steady", 50, ms=1.0)])),
    ]  # fmt: skip
    steps = [phase("100/s", 100), phase("1000/s", 1000, ms=500.0)]
    peak = Run("4", "e4-peak", 3, u, 1000, result([phase("ramp", 100, False), *steps]))
    _peak_notes(peak, steps, lambda p: p.p(99) <= s.p99_ms)
    runs.append(peak)
    facts = {
        "persister": {"rows_per_s_mean": 900, "rows_per_s_max": 40_000, "lag_p99_s": 0.5,
                      "exactly_once": True},
        "idle": {"connections": 3000, "rss_per_connection_kb": 12.5},
        "failures": ["part_cluster: RuntimeError('no cluster')"],
    }  # fmt: skip
    raw = {"settings": s.model_dump(), "chat_env": s.chat_env(), "elapsed_s": 42,
           "runs": [r.row() for r in runs], "facts": facts}  # fmt: skip
    back: Results = json.loads(json.dumps(raw, default=str))  # as results.json gives it back
    return back


@pytest.fixture(autouse=True)
def fixed_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # machine() times a loop and runs redis-server/mariadbd/nginx for their versions.
    monkeypatch.setattr(document, "machine", lambda: {"cpu": "test"})


def test_report_and_charts(tmp_path: Path, data: Results) -> None:
    summary = document.write_report(tmp_path, data)
    text = (tmp_path / "report.md").read_text()
    assert summary in text
    lines = summary.splitlines()
    assert lines[0] == "| experiment | original (k6, Spring Boot) | this project | target |"
    # Experiment 1 has two lines; 2, 3, 4, 5, 6 and L one each; C and 7 did not run.
    assert len(lines) == 2 + 8
    assert "4. peak, 1000 users" in summary
    assert "highest step that held" in summary
    assert "5. persister during 4: kept up?" in summary and "30,000" not in summary
    assert "6. idle connections on one gateway (3,000)" in summary
    assert "low load: 100 users, 50 msgs/s" in summary
    assert "C. Redis Cluster" not in summary and "7. textbook" not in summary
    order = [
        "## Summary",
        "## Machine",
        "## Settings",
        "## Every run",
        "## Peak searches",
        "## Experiment 2: reading the sync numbers",
        "## Experiment 3: memory broker",
        "## Failures",
        "## Persister during the peak (experiment 5)",
        "## Idle (experiment 6)",
        "## Method",
    ]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    for name in ("deliveries.png", "p99.png", "latency_cdf.png", "steps_big-room.png"):
        assert (tmp_path / name).stat().st_size > 0
        assert f"![{name}]({name})" in text


def test_an_experiment_is_one_place(
    tmp_path: Path, data: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Extra(Experiment):
        key = "X"

        def rows(self, data: Results) -> list[Row]:
            return [("X. extra", "-", "measured", "met")]

        def notes(self, data: Results) -> list[str]:
            return ["## Experiment X", ""]

        def facts(self, data: Results) -> list[str]:
            return ["## Extra facts", ""]

    monkeypatch.setattr(document, "EXPERIMENTS", (*EXPERIMENTS, Extra()))
    data["settings"]["experiments"].append("X")  # an experiment not asked for has no lines
    summary = document.write_report(tmp_path, data)
    text = (tmp_path / "report.md").read_text()
    assert summary.splitlines()[-1] == "| X. extra | - | measured | met |"
    assert text.index("## Experiment 3") < text.index("## Experiment X") < text.index("## Fail")
    assert text.index("## Idle") < text.index("## Extra facts") < text.index("## Method")


def test_a_chart_failure_keeps_the_numbers(
    tmp_path: Path, data: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(out: Path, data: Results) -> list[str]:
        raise RuntimeError("no display")

    monkeypatch.setattr(document, "charts", broken)
    summary = document.write_report(tmp_path, data)
    assert "(charts failed: RuntimeError('no display'))" in summary
    assert "![" not in (tmp_path / "report.md").read_text()


# The empty latency CDF has no legend to draw: matplotlib warns, as it always did.
@pytest.mark.filterwarnings("ignore:No artists with labels found")
def test_empty_results(tmp_path: Path, data: Results) -> None:
    empty = {**data, "runs": [], "facts": {}}
    summary = document.write_report(tmp_path, empty)
    assert "not run" in summary
    assert (tmp_path / "latency_cdf.png").exists()
    assert not (tmp_path / "deliveries.png").exists()


def test_command_line(
    tmp_path: Path,
    data: Results,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "results.json").write_text(json.dumps(data))
    monkeypatch.setattr(sys, "argv", ["bench.report", str(tmp_path)])
    report_main.main()
    assert capsys.readouterr().out.startswith("| experiment |")
    assert (tmp_path / "report.md").exists()


# -- experiments R, P and S, in the shapes bench.run, bench.rooms and bench.compare record ------

PROJECT = {"gateway0": 30.0, "gateway1": 30.0, "gateway2": 30.0, "nginx": 12.0, "redis": 20.0,
           "persister0": 30.0, "mariadb": 5.0, "loadgen0": 20.0, "loadgen1": 20.0}  # fmt: skip
PEER = {"peer1": 15.0, "peer2": 15.0, "peer3": 15.0, "nginx": 10.0, "redis": 5.0,
        "loadgen0": 20.0, "loadgen1": 20.0}  # fmt: skip


def step(rate: float, deliveries: int, p50: float, p99: float, reorder_ok: bool = False,
         **faults: int) -> dict[str, Any]:  # fmt: skip
    """One entry of a run's "steps" (bench.run._step): held at p99 ≤ 200 ms without faults
    (the baseline's, ``reorder_ok``: without duplicates; its gaps may be reorders)."""
    counts = {"gaps": 0, "duplicates": 0, "reordered": 0, **faults}
    clean = not counts["duplicates"]  # as _step records it: reorders allowed
    strict = clean and not counts["gaps"] and not counts["reordered"]
    return {"step": f"{rate:g}/s", "rate": float(rate), "sent_per_s": round(rate * 0.998),
            "deliveries_per_s": deliveries, "p50_ms": p50, "p99_ms": p99, **counts, "errors": 0,
            "clean": clean, "held": (clean if reorder_ok else strict) and p99 <= 200}  # fmt: skip


def cpu(st: dict[str, Any], procs: dict[str, float]) -> dict[str, Any]:
    """One entry of a run's "cpu_per_step" (bench.rooms.cpu_per_message)."""
    sent = st["sent_per_s"]
    servers = sum(c for n, c in procs.items() if not n.startswith("loadgen"))
    return {"step": st["step"], "sent_per_s": sent, "cpu_pct": procs,
            "us_per_msg": {n: round(c * 1e4 / sent, 1) for n, c in procs.items()},
            "server_us_per_msg": round(servers * 1e4 / sent, 1)}  # fmt: skip


def ladder(experiment: str, label: str, users: int, steps: list[dict[str, Any]],
           procs: dict[str, float], **notes: Any) -> dict[str, Any]:  # fmt: skip
    """A ladder run as ``Run.row()`` gives it, with its notes."""
    held = [st for st in steps if st["held"]]
    peak = max(held, key=lambda st: st["deliveries_per_s"], default=None)
    top = peak or max(steps, key=lambda st: st["deliveries_per_s"])
    faults = {k: sum(st[k] for st in steps) for k in ("gaps", "duplicates", "reordered")}
    ok = not faults["gaps"] and not faults["duplicates"]
    return {
        "experiment": experiment, "label": label, "gateways": 3, "users": users,
        "offered_rate": steps[-1]["rate"], "phase": "measured", "seconds": 10.0 * len(steps),
        "rate": top["rate"], "sent_per_s": top["sent_per_s"], "echoed_per_s": top["sent_per_s"],
        "deliveries_per_s": top["deliveries_per_s"], "frames_per_s": top["deliveries_per_s"],
        "mb_per_s": 1.0, "p50_ms": top["p50_ms"], "p95_ms": top["p99_ms"],
        "p99_ms": max(st["p99_ms"] for st in steps), "max_ms": 900.0, "latency_samples": 500,
        **faults, "errors": {}, "closes": {}, "verified": ok,
        "problems": [] if ok else [f"gaps={faults['gaps']}"], "anomalies": [],
        "processes": {n: {"cpu_pct": round(c), "rss_mb": 90.0} for n, c in procs.items()},
        "cdf": [[1.0, 0.5], [10.0, 1.0]], "steps": steps, "peak": peak, "best_step": top,
        "stopped_after": None, "cpu_per_step": [cpu(st, procs) for st in steps], **notes,
    }  # fmt: skip


@pytest.fixture
def rp() -> Results:
    """A run of experiments 4, 5, 7, R, P and S (default sizes: 1,000 users in the big room,
    5,000 users in rooms of 5)."""
    s = BenchSettings(experiments=["4", "5", "7", "R", "P", "S"])
    small = {"scenario": "small-rooms", "room_size": 5}
    one = {"scenario": "one-room", "room_size": 1000}
    stored = {"messages_published": 12_000, "rows": 12_000, "rooms": 1000, "rooms_wrong": 0,
              "examples": [], "exactly_once": True}  # fmt: skip
    runs = [
        ladder("4", "e4-peak", 1000, [step(100, 99_800, 20, 90), step(500, 499_000, 40, 180),
                                      step(1000, 700_000, 90, 900)], PROJECT),
        ladder("7", "e7-baseline", 1000, [step(10, 9_980, 30, 150, True, reordered=100),
                                          step(20, 12_000, 300, 2_000, True, gaps=38_000,
                                               reordered=45_000)], {"baseline": 90.0}),
        ladder("R", "eR-rooms", 5000, [step(500, 2_495, 2.0, 20), step(1000, 4_990, 3.0, 40),
                                       step(2000, 9_000, 90, 250)], PROJECT,
               rooms=1000, room_size=5, rooms_per_user=1, stored=stored),
        ladder("R", "eR-multi", 5000, [step(500, 2_495, 2.5, 30), step(1000, 4_990, 60, 400)],
               PROJECT, rooms=3000, room_size=5, rooms_per_user=3,
               stored={**stored, "rows": 11_998, "rooms_wrong": 2, "exactly_once": False,
                       "examples": [["eR-multi-7", 4, [3, 3, 1, 3]]]}),
        ladder("P", "eP-one-room-project", 1000, [step(100, 99_800, 20, 90),
                                                  step(500, 499_000, 40, 180),
                                                  step(1000, 700_000, 90, 900)], PROJECT,
               stack="project", **one),
        ladder("P", "eP-small-rooms-project", 5000, [step(500, 2_495, 2.0, 20),
                                                     step(1000, 4_990, 3.1, 40),
                                                     step(2000, 9_980, 8.0, 150),
                                                     step(3000, 12_000, 300, 640)], PROJECT,
               stack="project", **small),
        ladder("P", "eP-one-room-node", 1000, [step(50, 49_900, 2, 30),
                                               step(100, 99_800, 4, 90),
                                               step(500, 300_000, 400, 1_900)], PEER,
               stack="node", **one),
        ladder("P", "eP-small-rooms-node", 5000, [step(500, 2_495, 1.0, 5),
                                                  step(1000, 4_990, 1.6, 20),
                                                  step(2000, 9_000, 50, 300),
                                                  step(3000, 9_500, 200, 900)], PEER,
               stack="node", **small),
        ladder("P", "eP-one-room-python", 1000, [step(50, 24_950, 5, 150),
                                                 step(100, 30_000, 300, 1_500)], PEER,
               stack="python", **one),
        ladder("P", "eP-small-rooms-python", 5000, [step(500, 2_495, 1.2, 8),
                                                    step(1000, 4_990, 1.7, 30),
                                                    step(2000, 9_900, 9, 90, gaps=2)], PEER,
               stack="python", **small),
    ]  # fmt: skip
    facts = {
        # bench.run peak(): the persister during the peak, bounded by the rate offered there
        "persister": {"samples": 30, "rows_per_s_mean": 450, "rows_per_s_max": 584,
                      "rows_per_s_p50_busy": 500, "lag_p99_s": 0.6, "lag_max_s": 0.9,
                      "messages_published": 5298, "rows": 5298, "distinct_seqs": 5298,
                      "exactly_once": True, "seconds_to_catch_up_after_run": 0.3},
        # bench.persister.measure(): the capacity
        "persister_capacity": {"rows": 50_000, "sync_rows": 3000, "modes": [
            {"mode": "async, batch 200", "kind": "async", "batch": 200, "replicas": 1,
             "rows_per_s": 24_000},
            {"mode": "async, batch 1000", "kind": "async", "batch": 1000, "replicas": 1,
             "rows_per_s": 41_000},
            {"mode": "async, batch 200, 2 replicas", "kind": "async", "batch": 200,
             "replicas": 2, "rows_per_s": 19_000},
            {"mode": "sync, one commit per message", "kind": "sync", "batch": 1,
             "replicas": 1, "rows_per_s": 1_200}]},
    }  # fmt: skip
    raw = {"settings": s.model_dump(), "chat_env": s.chat_env(), "elapsed_s": 42, "runs": runs,
           "facts": facts}  # fmt: skip
    back: Results = json.loads(json.dumps(raw, default=str))
    return back


def summary_of(data: Results) -> str:
    """The summary table alone (no report, no charts)."""
    return table(document.summary_rows(data), document.SUMMARY_HEADER)


def row(*cells: Any) -> str:
    """One line of a markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def line(summary: str, start: str) -> str:
    """The summary line of the experiment starting with ``start``."""
    found = [x for x in summary.splitlines() if x.startswith(f"| {start}")]
    assert len(found) == 1, (start, summary)
    return found[0]


def test_side_by_side_ratios_and_verdicts(tmp_path: Path, rp: Results) -> None:
    summary = document.write_report(tmp_path, rp)
    text = (tmp_path / "report.md").read_text()
    # Only the experiments asked for: no "not run" lines for 1, 2, 3.
    assert "not run" not in summary and "1 gateway" not in summary
    small = line(summary, "P. many small rooms (5,000 users, rooms of 5), 3 server processes")
    assert "this project: 2000 msgs/s, 9,980 deliveries/s, p50 8.0 / p99 150 ms" in small
    assert "Node Socket.IO: 1000 msgs/s, 4,990 deliveries/s, p50 1.6 / p99 20 ms" in small
    assert "python-socketio: 1000 msgs/s" in small and "2 gaps, 0 reordered" in small
    assert "this project ÷ Node Socket.IO 2.0x, ÷ python-socketio 2.0x" in small
    assert small.endswith("| held msgs/s ≥ 1.5x Node's: met (target ≥ 1.5x) |")
    p50 = line(summary, "P. many small rooms (5,000 users, rooms of 5): p50 at 1,000 msgs/s")
    assert "this project 3.1 ms, Node Socket.IO 1.6 ms, python-socketio 1.7 ms" in p50
    assert "this project +1.5 ms" in p50
    assert p50.endswith("p50 within 2.0 ms of Node's: met (target ≤ 2.0 ms over Node's) |")
    one = line(summary, "P. one room of 1,000, 3 server processes per stack: held deliveries/s")
    assert "this project: 500 msgs/s, 499,000 deliveries/s" in one
    assert "this project ÷ Node Socket.IO 5.0x, ÷ python-socketio 20.0x" in one
    assert one.endswith("| held deliveries/s ≥ 10.0x Node's: MISSED by 2.0x (target ≥ 10.0x) |")
    # The side-by-side tables, the ladders of every stack and the CPU at a common step.
    ours, node = "this project", "Node Socket.IO"
    assert (
        row(ours, "2000 (1,996 sent/s)", "9,980", "8.0 / 150", "3.1 ms", "0 / 0 / 0", "✓", "-")
        in text
    )
    assert (
        row(node, "1000 (998 sent/s)", "4,990", "1.6 / 20", "1.6 ms", "0 / 0 / 0", "✓", "2.0x")
        in text
    )
    assert (
        row(
            "python-socketio",
            "1000 (998 sent/s)",
            "4,990",
            "1.7 / 30",
            "1.7 ms",
            "2 / 0 / 0",
            "✗ gaps=2",
            "2.0x",
        )
        in text
    )
    assert (
        row(node, "100 (100 sent/s)", "99,800", "4 / 90", "not run", "0 / 0 / 0", "✓", "5.0x")
        in text
    )
    assert row(node, "3000/s", "2,994", "9,500", 200, 900, 0, 0, 0, "✗") in text
    assert "CPU per message at 1000 msgs/s offered, a step every stack ran and held." in text
    assert (
        row(
            ours,
            "1000/s",
            998,
            "90.0 % / 902 µs",
            "12.0 % / 120 µs",
            "20.0 % / 200 µs",
            "30.0 % / 301 µs",
            "5.0 % / 50.1 µs",
            "157 % / 1,573 µs",
            "40.0 % / 401 µs",
        )
        in text
    )
    assert (
        row(
            node,
            "1000/s",
            998,
            "45.0 % / 451 µs",
            "10.0 % / 100 µs",
            "5.0 % / 50.1 µs",
            "-",
            "-",
            "60.0 % / 601 µs",
            "40.0 % / 401 µs",
        )
        in text
    )
    # One room: no step every stack held (python only 50, the project from 100).
    assert "at 100 msgs/s offered, a step every stack ran (not every stack held it)." in text
    assert "the send time the client wrote into the message" in text  # end to end, every stack
    # Charts: one per scenario, like with like; R and P not in the big room's charts.
    for name in ("steps_big-room.png", "steps_rooms.png", "steps_compare-one-room.png",
                 "steps_compare-small-rooms.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0 and f"![{name}]({name})" in text
    assert not (tmp_path / "peak_steps.png").exists()


def test_rooms_sections(tmp_path: Path, rp: Results) -> None:
    summary = document.write_report(tmp_path, rp)
    text = (tmp_path / "report.md").read_text()
    rooms = line(summary, "R. many small rooms (5,000 users, rooms of 5)")
    assert "held 1000 msgs/s (998 sent/s): 4,990 deliveries/s, p50 3.0 / p99 40 ms" in rooms
    assert "over the run 0 gaps, 0 reordered, 0 duplicates" in rooms
    assert "all 12,000 messages stored exactly once" in rooms
    assert rooms.endswith("verified): met; stored exactly once: met |")
    multi = line(summary, "R. each of 5,000 users in 3 rooms over one connection (joined with")
    assert "3,000 rooms of 5" in multi and "held 500 msgs/s" in multi
    assert "NOT stored exactly once: 11,998 rows for 12,000 messages, 2 rooms wrong" in multi
    assert multi.endswith("stored exactly once: MISSED |")
    section = text[text.index("## Experiment R") : text.index("## Experiment P")]
    assert (
        row(
            "step",
            "msgs/s sent",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "gaps",
            "duplicates",
            "reordered",
            "held",
        )
        in section
    )
    assert "| 2000/s | 1,996 | 9,000 | 90 | 250 | 0 | 0 | 0 | ✗ |" in section
    assert ("| step | msgs/s sent | gateway0 | gateway1 | gateway2 | nginx | redis | persister0 "
            "| mariadb | loadgen0 | loadgen1 | servers |") in section  # fmt: skip
    assert "| 500/s | 499 | 30.0 % / 601 µs | 30.0 % / 601 µs |" in section
    # Experiments R and P show their own ladders: the peak searches' table keeps 4 and 7.
    searches = text[text.index("## Peak searches") : text.index("## Experiment R")]
    assert "| e4-peak |" in searches and "| e7-baseline |" in searches
    assert "eR-" not in searches and "eP-" not in searches


def test_persister_kept_up_and_capacity(tmp_path: Path, rp: Results) -> None:
    summary = document.write_report(tmp_path, rp)
    text = (tmp_path / "report.md").read_text()
    during = line(summary, "5. persister during 4")
    # The rows/s of the peak are the rate offered there, not a capacity: no "MISSED" for them.
    assert "MISSED" not in during and "30,000" not in during
    assert "kept up: lag p99 0.6 s (max 0.9 s), backlog not sampled" in during
    assert "all 5,298 messages in MariaDB 0.3 s after the run" in during
    assert "450 rows/s mean (584 max) = the rate offered, not capacity (see S)" in during
    assert during.endswith("| lag p99 met (target ≤ 2.0 s); exactly once: met |")
    capacity = line(summary, "S. persister capacity (`make bench-persister`: 50,000 rows")
    assert "async, batch 200: 24,000 rows/s; async, batch 1000: 41,000 rows/s" in capacity
    assert capacity.endswith(
        "| batch 200, one persister: MISSED by 25.0% (target ≥ 30,000 rows/s) |"
    )
    assert "## Persister capacity (experiment S)" in text
    assert "| async, batch 200, 2 replicas | 19,000 |" in text
    # A persister that fell behind says so, with its backlog when the run sampled it.
    rp["facts"]["persister"].update(lag_p99_s=4.0, rows=5000, backlog_max=2400)
    behind = line(summary_of(rp), "5. persister during 4")
    assert "FELL BEHIND: lag p99 4.0 s" in behind and "backlog max 2,400 entries" in behind
    assert "only 5,000 of 5,298 messages in MariaDB 120 s after the run" in behind
    assert "lag p99 MISSED by 2.0x (target ≤ 2.0 s)" in behind


def test_gaps_and_reorders_for_every_stack(tmp_path: Path, rp: Results) -> None:
    summary = document.write_report(tmp_path, rp)
    baseline = line(summary, "7. textbook Starlette + broadcaster")
    assert "over the run, baseline: 38,000 gaps, 45,100 reordered, 0 duplicates" in baseline
    assert "this project (e4-peak): 0 gaps, 0 reordered, 0 duplicates" in baseline
    assert "baseline 9,980/s at 10 msgs/s (p99 150 ms)" in baseline and "ratio 50.0x" in baseline
    assert "over the run 0 gaps, 0 reordered, 0 duplicates" in line(summary, "4. peak")
    text = (tmp_path / "report.md").read_text()  # the peak searches' table has a gaps column
    assert row("e7-baseline", "20/s", 20, "12,000", 300, 2000, "✓", "38,000", "45,000", "✗") in text
    for start in ("P. many small rooms (5,000 users, rooms of 5), 3", "P. one room of 1,000"):
        both = line(summary, start)
        assert both.count(" gaps, ") == 3 and both.count(" reordered, ") == 3


def test_a_ladder_held_to_its_top_decides_nothing(rp: Results) -> None:
    node = next(r for r in rp["runs"] if r["label"] == "eP-small-rooms-node")
    node["steps"] = [st for st in node["steps"] if st["rate"] <= 1000]
    node["peak"] = node["steps"][-1]
    small = line(summary_of(rp), "P. many small rooms (5,000 users, rooms of 5), 3")
    assert "Node Socket.IO: 1000 msgs/s (top of the ladder)" in small
    assert "not decided: at most 2.0x, Node held the top step (target ≥ 1.5x)" in small
    project = next(r for r in rp["runs"] if r["label"] == "eP-small-rooms-project")
    project["steps"] = [st for st in project["steps"] if st["rate"] <= 1000]
    project["peak"] = project["steps"][-1]
    small = line(summary_of(rp), "P. many small rooms (5,000 users, rooms of 5), 3")
    assert "not measured: both held the top step of the ladder (target ≥ 1.5x)" in small


def test_node_holding_no_step_makes_the_ratio_a_lower_bound(rp: Results) -> None:
    # Node failed even its lowest step (49,900 deliveries/s at 50 msgs/s): it holds less than
    # that, so this project's 499,000 is over 10.0x Node's, whatever Node would hold lower down.
    node = next(r for r in rp["runs"] if r["label"] == "eP-one-room-node")
    node["peak"] = None
    one = line(summary_of(rp), "P. one room of 1,000, 3 server processes per stack")
    assert "Node Socket.IO: no step held" in one
    assert one.endswith(
        "| held deliveries/s ≥ 10.0x Node's: met: over 10.0x, Node held no step, not even its "
        "ladder's lowest (target ≥ 10.0x) |"
    )
    node["steps"] = node["steps"][1:]  # its lowest now 99,800/s: the bound is 5.0x
    one = line(summary_of(rp), "P. one room of 1,000, 3 server processes per stack")
    assert one.endswith(
        "| held deliveries/s ≥ 10.0x Node's: not decided: over 5.0x, Node held no step, not "
        "even its ladder's lowest (target ≥ 10.0x) |"
    )


def test_persister_capacity_runs_inside_make_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, Path]] = []

    def measure(count: int, sync_count: int, work: Path) -> dict[str, Any]:
        calls.append((count, sync_count, work))
        return {"rows": count, "sync_rows": sync_count, "modes": []}

    monkeypatch.setattr("bench.run.persister_capacity", measure)
    bench = Bench(BenchSettings(quick=True), tmp_path, tmp_path)
    assert "S" in BenchSettings().experiments
    bench.part_persister_capacity({"4"})
    assert not calls and "persister_capacity" not in bench.facts
    bench.part_persister_capacity({"S"})
    assert calls == [(20_000, 500, tmp_path / "persister")]
    assert bench.facts["persister_capacity"] == {"rows": 20_000, "sync_rows": 500, "modes": []}


def test_the_idle_cost_of_small_rooms_is_judged_per_gateway() -> None:
    run: dict[str, Any] = {"users": 5000, "idle_cpu_pct": {"gateway0": 1.9, "gateway1": 2.4}}
    assert idle_text(run) == (
        "5,000 connections silent: gateway0 1.9 %, gateway1 2.4 % of a core "
        "(≤ 2 % per gateway: MISSED)"
    )
    run["idle_cpu_pct"] = {"gateway0": 1.9, "nginx": 5.0}
    assert idle_text(run).endswith("(≤ 2 % per gateway: met)")
    assert idle_text({"users": 1}) == "not measured"
    # Several rooms per connection is not the target's shape: reported, not judged.
    run.update(rooms_per_user=3, idle_cpu_pct={"gateway0": 2.8})
    assert idle_text(run) == (
        "5,000 connections silent: gateway0 2.8 % of a core (3 rooms each; the ≤ 2 % target is"
        " for one)"
    )


def test_the_persisters_cost_per_row_is_judged_at_the_trickle_and_each_held_step() -> None:
    def step(name: str, sent: int, us: float) -> dict[str, Any]:
        return {"step": name, "sent_per_s": sent, "us_per_msg": {"persister0": us, "redis": 9.0}}

    run: dict[str, Any] = {
        "trickle_cpu": step("trickle", 100, 48.0),
        "steps": [{"step": "500/s", "held": True}, {"step": "1000/s", "held": False}],
        "cpu_per_step": [step("500/s", 500, 30.0), step("1000/s", 990, 70.0)],
    }
    # The step that did not hold is left out: an overloaded box is not the persister's cost.
    assert persister_text(run) == (
        "100 msgs/s (trickle): 48 µs, 500 msgs/s: 30 µs",
        "≤ 50 µs per row: met",
    )
    run["trickle_cpu"] = step("trickle", 100, 60.0)
    assert persister_text(run)[1] == "≤ 50 µs per row: MISSED"
    assert persister_text({}) == ("not measured", "not judged")
