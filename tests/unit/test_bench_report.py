"""``bench.report``: report.md and its charts from a results dict, each experiment's share in its
place, and a chart failure that keeps the numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import __main__ as report_main
from bench.report import document
from bench.report.experiments import EXPERIMENTS, Experiment
from bench.report.results import Results, Row
from bench.run import Run, _peak_notes
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
    return json.loads(json.dumps(raw, default=str))  # as results.json gives it back


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
    assert "5. persister during 4" in summary and "met (target ≥ 30,000 rows/s)" in summary
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
        "## Persister (experiment 5)",
        "## Idle (experiment 6)",
        "## Method",
    ]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    for name in ("deliveries.png", "p99.png", "latency_cdf.png", "peak_steps.png"):
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
