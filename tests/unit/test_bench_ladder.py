"""bench/ladder.py: when a step holds and when the climb stops."""

from __future__ import annotations

from bench.ladder import judges
from loadtests.runner import PhaseResult


def step(p99_ms: float, gaps: int = 0) -> PhaseResult:
    phase = PhaseResult("step", 1.0, 100.0, True, counts={"gaps": gaps})
    for _ in range(100):
        phase.latency.add(p99_ms)
    return phase


def test_a_step_holds_within_the_bound_and_verified() -> None:
    ok, _ = judges(200.0, 2)
    assert ok(step(150.0))
    assert not ok(step(250.0))
    assert not ok(step(10.0, gaps=1))


def test_the_climb_stops_after_strikes_in_a_row_or_at_once_on_a_verification_failure() -> None:
    _, go_on = judges(200.0, 2)
    assert go_on(step(250.0))  # one noisy step
    assert go_on(step(150.0))  # held again: the count starts over
    assert go_on(step(250.0))
    assert not go_on(step(250.0))  # two in a row
    _, go_on = judges(200.0, 2)
    assert not go_on(step(10.0, gaps=1))
