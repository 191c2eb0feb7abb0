"""The adaptive flush window (gateway/hub.py): short when flushes are cheap, growing with their
cost under load, never outside its bounds."""

from __future__ import annotations

import pytest

from gateway.hub import FLUSH_SHARE, adapt_window


@pytest.mark.parametrize(
    ("flush_s", "expected"),
    [
        (0.0, 0.010),  # nothing written: the minimum
        (0.001, 0.010),  # a cheap flush: still the minimum
        (0.005, 0.005 * FLUSH_SHARE),  # a costly one: proportional
        (0.010, 0.040),
        (1.0, 0.050),  # a very slow one: capped
    ],
)
def test_window_follows_the_cost_of_a_flush(flush_s: float, expected: float) -> None:
    assert adapt_window(flush_s, 0.010, 0.050) == pytest.approx(expected)


def test_minimum_wins_when_bounds_cross() -> None:
    # CHAT_COALESCE_MS above CHAT_COALESCE_MAX_MS: the window never drops below the minimum.
    assert adapt_window(0.0, 0.5, 0.05) == 0.5
    assert adapt_window(1.0, 0.5, 0.05) == 0.5
