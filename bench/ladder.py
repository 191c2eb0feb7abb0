"""When a step of a rate ladder holds, and when the climb stops (experiments 4, R and P)."""

from __future__ import annotations

from collections.abc import Callable

from loadtests.runner import PhaseResult

Judge = Callable[[PhaseResult], bool]


def judges(p99_ms: float, strikes: int) -> tuple[Judge, Judge]:
    """``(ok, go_on)``: a step holds at p99 ≤ ``p99_ms`` with every message verified; the climb
    stops at once on a verification failure, and after ``strikes`` steps in a row over the
    bound (one noisy step on a loaded box is not the end)."""

    def ok(phase: PhaseResult) -> bool:
        return phase.p(99) <= p99_ms and phase.clean()

    misses = [0]

    def go_on(phase: PhaseResult) -> bool:
        if not phase.clean():
            return False
        misses[0] = 0 if ok(phase) else misses[0] + 1
        return misses[0] < max(1, strikes)

    return ok, go_on
