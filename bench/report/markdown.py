"""Markdown tables and the number formats of the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A markdown table: one line per row, each cell as ``str`` gives it."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt(x: float | None, unit: str = "") -> str:
    """A number with thousands separators: no decimals from 100 up, one below."""
    if x is None:
        return "-"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.1f}{unit}"


def verdict(value: float | None, target: float, higher: bool, unit: str) -> str:
    """Whether ``value`` meets ``target`` (at least it if ``higher``, else at most), and by
    how much it misses."""
    bound = f"target {'≥' if higher else '≤'} {fmt(target)}{unit}"
    if value is None:
        return "not measured"
    met = value >= target if higher else value <= target
    if met:
        return f"met ({bound})"
    if not value:
        return f"MISSED: 0 measured ({bound})"
    miss = target / value if higher else value / target
    by = f"{100 * (miss - 1):.1f}%" if miss < 2 else f"{miss:.1f}x"
    return f"MISSED by {by} ({bound})"
