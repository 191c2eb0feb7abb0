"""Experiment C: experiments 1 (3 gateways, the big room) and 3 on a local Redis Cluster."""

from __future__ import annotations

from bench.report.experiments.base import Experiment
from bench.report.results import Results, Row, cross_pct, delivered, find, verified


class Cluster(Experiment):
    key = "C"

    def rows(self, data: Results) -> list[Row]:
        u = data["settings"]["users"]
        cross, big = find(data, "e3-redis-cluster"), find(data, f"eC-cluster-{u}")
        if not (cross or big):
            return []
        return [
            (
                f"C. Redis Cluster (3 primaries + 3 replicas), 3 gateways, {u} users",
                "-",
                f"cross-gateway {cross_pct(cross)} {verified(cross)}; "
                f"{delivered(data, f'eC-cluster-{u}')}",
                "100% cross-gateway",
            )
        ]
