"""Snapshots of every service process of a stack: memory, files, sockets, gauges, Redis keys."""

from __future__ import annotations

import redis

from bench.run import Bench, scrape
from bench.soak.keyspace import redis_keys
from bench.soak.processes import open_files, sockets
from loadtests.procstats import ProcessSampler
from stack.topology import Stack

Snapshot = dict[str, dict[str, float]]  # process → metric → value
GATEWAY_METRICS = {
    "chat_asyncio_tasks": "tasks",
    "chat_connections": "connections",
    "chat_local_rooms": "local_rooms",
}


class Probe:
    """Takes snapshots of every service process of a stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pids = Bench.pids(stack)
        self.sampler = ProcessSampler(self.pids)
        self.redis = redis.Redis.from_url(stack.redis.url)

    def gateway_metrics(self) -> dict[str, dict[str, float]]:
        """Each gateway's ``GATEWAY_METRICS`` from its ``/metrics`` (NaN when missing)."""
        out = {}
        for i, g in enumerate(self.stack.gateways):
            values = scrape(g.url + "/metrics")
            out[f"gateway{i}"] = {
                short: values.get(name, float("nan")) for name, short in GATEWAY_METRICS.items()
            }
        return out

    def backlog(self) -> float:
        """The persister's backlog (NaN when its page cannot be read)."""
        values = scrape(self.stack.persisters[0].url + "/metrics")
        return values.get("chat_persist_backlog", float("nan"))

    def snapshot(self) -> Snapshot:
        """Every process's RSS and open files, plus gateway, persister and Redis figures."""
        snap: Snapshot = {}
        for name, pid in self.pids.items():
            snap[name] = {
                "rss_mb": round(self.sampler.rss(name) / 2**20, 1),
                "fds": float(open_files(pid)),
            }
        for name, values in self.gateway_metrics().items():
            snap[name].update(values)
        for i, g in enumerate(self.stack.gateways):
            if g.proc is not None:
                snap[f"gateway{i}"].update(
                    sockets(g.proc.pid, g.port, self.stack.redis_servers()[0].port)
                )
        snap["persister0"]["backlog"] = self.backlog()
        snap["redis"].update(redis_keys(self.redis))
        return snap

    def per_second(self) -> dict[str, float]:
        """Sampled every second of the run (``on_second``)."""
        out = {}
        for name, values in self.gateway_metrics().items():
            for metric, value in values.items():
                out[f"{name}.{metric}"] = value
        out["persister0.backlog"] = self.backlog()
        return out
