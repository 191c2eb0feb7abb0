"""Experiment 1: 1 gateway vs 3 behind nginx, with a smaller room and the big one."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.results import Results, Row, delivered


class Scaling(Experiment):
    key = "1"
    charted = True

    def rows(self, data: Results) -> list[Row]:
        s = data["settings"]
        u, us = s["users"], s["users_small"]
        one_big = delivered(data, f"e1-1gw-{u}")
        return [
            (
                f"1 gateway, {us} → {u} users (offered {s['rate']:g} msgs/s)",
                "79,000 → 73,665 msgs/s",
                f"{delivered(data, f'e1-1gw-{us}')} → {one_big}",
                "",
            ),
            (
                f"1 → 3 gateways, {u} users",
                "73,665 → 163,022 msgs/s",
                f"{one_big} → {delivered(data, f'e1-3gw-{u}')}",
                "",
            ),
        ]
