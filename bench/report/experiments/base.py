"""What an experiment contributes to the report; each experiment module subclasses it."""

from __future__ import annotations

from bench.report.results import Results, Row


class Experiment:
    """One experiment's share of the report. Its runs carry ``key`` as their "experiment";
    a subclass overrides only what it shows (the defaults show nothing)."""

    key = ""
    charted = False  # its runs (a peak search: its highest held step) are bars of
    # deliveries.png and p99.png
    own_ladders = False  # it shows its runs' steps itself: not in "Peak searches" nor in
    # latency_cdf.png (each step is on its scenario's chart)

    def asked(self, data: Results) -> bool:
        """Whether the run was asked for it (``BENCH_EXPERIMENTS``): its summary lines are left
        out otherwise, rather than saying "not run"."""
        return self.key in data["settings"].get("experiments", self.key)

    def rows(self, data: Results) -> list[Row]:
        """Its lines of the summary table."""
        return []

    def notes(self, data: Results) -> list[str]:
        """Markdown placed after the tables of runs: how to read its numbers."""
        return []

    def facts(self, data: Results) -> list[str]:
        """Markdown placed after the failures: what it measured that is no load run."""
        return []
