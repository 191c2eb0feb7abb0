"""``report.md`` + PNG charts from a benchmark's ``results.json`` (and the summary it prints).

Each experiment's share of the page (summary rows, reading notes, facts) lives in one module of
``experiments``; the page around them is ``document``.
"""

from bench.report.document import write_report

__all__ = ["write_report"]
