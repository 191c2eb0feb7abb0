"""``report.md``: the page around the experiments' summary rows, notes and facts."""

from __future__ import annotations

from pathlib import Path

from bench.report.charts import charts
from bench.report.experiments import EXPERIMENTS
from bench.report.machine import machine
from bench.report.markdown import table
from bench.report.method import method
from bench.report.results import Results, Row
from bench.report.tables import every_run, peak_searches

SUMMARY_HEADER = ("experiment", "original (k6, Spring Boot)", "this project", "target")


def summary_rows(data: Results) -> list[Row]:
    """(experiment, original, this project, target/verdict), every experiment the run was asked
    for in turn."""
    return [row for e in EXPERIMENTS if e.asked(data) for row in e.rows(data)]


def write_report(out: Path, data: Results) -> str:
    """Write report.md and charts; return the summary table (markdown)."""
    summary = table(summary_rows(data), SUMMARY_HEADER)
    try:
        images = charts(out, data)
    except Exception as exc:  # a chart must not lose the numbers
        images = []
        summary += f"\n\n(charts failed: {exc!r})"
    s = data["settings"]
    parts = [
        "# Benchmark report",
        "",
        f"Total time {data['elapsed_s']} s. Everything ran on this machine over 127.0.0.1 "
        "(load generator included). *Deliveries* = chat messages received by clients, each "
        "counted once per recipient (JSON arrays unpacked), as the original project counted "
        '"msgs/s".',
        "",
        "## Summary",
        "",
        summary,
        "",
        *[f"![{i}]({i})" for i in images],
        "",
        "## Machine",
        "",
        table(list(machine().items()), ("", "")),
        "",
        "## Settings",
        "",
        table(list(s.items()), ("BENCH_*", "value")),
        "",
        "Every chat process also got: "
        + ", ".join(f"`{k}={v}`" for k, v in data["chat_env"].items()),
        "",
        "## Every run (measured phases only; ramp and drain excluded)",
        "",
        every_run(data),
        "",
        *peak_searches(data),
        *(line for e in EXPERIMENTS for line in e.notes(data)),
    ]
    if data["facts"].get("failures"):
        parts += ["## Failures", "", *[f"- {f}" for f in data["facts"]["failures"]], ""]
    parts += [line for e in EXPERIMENTS for line in e.facts(data)]
    parts += method(s)
    (out / "report.md").write_text("\n".join(parts) + "\n")
    return summary
