"""How the soak report writes its numbers."""

from __future__ import annotations


def fmt(value: float | None) -> str:
    """A count with thousands separators, other values to one decimal; ``-`` for None/NaN."""
    if value is None or value != value:  # None or NaN
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def delta(start: float | None, end: float | None) -> str:
    """The change from ``start`` to ``end``, and in percent of ``start``."""
    if start is None or end is None or start != start or end != end:
        return "-"
    d = end - start
    text = f"{d:+,.1f}" if not float(d).is_integer() else f"{int(d):+,}"
    if start:
        text += f" ({100 * d / start:+.0f} %)"
    return text
