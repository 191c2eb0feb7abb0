"""The fault schedule: drawn from the seed (or fixed by ``CHAOS_SCHEDULE``). Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.chaos.settings import ChaosSettings


@dataclass(frozen=True)
class Planned:
    """A fault to inject ``at`` seconds after the traffic started."""

    at: float
    kind: str
    down_s: float  # how long the victim stays down before its restart
    pick: int  # which victim, where there is a choice (taken modulo the candidates)


def plan(s: ChaosSettings, seed: int) -> list[Planned]:
    """Faults at random gaps (0.5x..1.5x ``fault_every_s``) between the quiet start and end.

    Kinds come from a shuffled bag refilled when empty, so every kind is hit as evenly as the
    number of faults allows. A fixed ``CHAOS_SCHEDULE`` keeps its times and kinds; the rest
    (downtimes, victims) is still drawn from the seed.
    """
    rng = random.Random(seed)

    def planned(at: float, kind: str) -> Planned:
        down = round(rng.uniform(0.5, s.down_s), 2)
        return Planned(round(at, 2), kind, down, rng.randrange(1 << 16))

    if s.schedule:
        fixed = [(float(at), kind) for at, _, kind in (i.partition(":") for i in s.schedule)]
        return [planned(at, kind) for at, kind in sorted(fixed)]
    out: list[Planned] = []
    bag: list[str] = []
    at = s.quiet_start_s + rng.uniform(0, s.fault_every_s / 2)
    while at < s.seconds - s.quiet_end_s:
        if not bag:
            bag = list(s.faults)
            rng.shuffle(bag)
        out.append(planned(at, bag.pop()))
        at += rng.uniform(0.5, 1.5) * s.fault_every_s
    return out
