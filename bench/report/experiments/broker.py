"""Experiment 3: cross-gateway delivery with the Redis broker vs the memory broker."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.results import Results, Row, cross_pct, find, verified


class Broker(Experiment):
    key = "3"

    def rows(self, data: Results) -> list[Row]:
        mem, red = find(data, "e3-memory"), find(data, "e3-redis")
        return [
            (
                "memory → Redis broker, 3 users on 3 gateways",
                "0% → 100% cross-server",
                f"{cross_pct(mem)} {verified(mem)} → {cross_pct(red)} {verified(red)}",
                "100% with Redis",
            )
        ]

    def notes(self, data: Results) -> list[str]:
        mem = find(data, "e3-memory")
        if not mem:
            return []
        return [
            "## Experiment 3: memory broker",
            "",
            "With the memory broker each gateway numbers the room on its own and nothing "
            "crosses gateways, so cross-gateway delivery is expected to be 0 %. Its "
            "verification asks only for each user's own echoes and gapless order per gateway; "
            f"measured cross-gateway delivery: {cross_pct(mem)}, verification {verified(mem)}.",
            "",
        ]
