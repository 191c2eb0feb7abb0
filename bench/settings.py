"""Every knob of the benchmark, from ``BENCH_*`` environment variables.

``BENCH_QUICK=1`` shortens every phase (about 2 minutes in all)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


@dataclass
class BenchSettings:
    quick: bool = False
    experiments: list[str] = field(default_factory=lambda: list("1234567LC"))
    users: int = 1000  # the big room
    users_small: int = 500  # experiment 1's smaller run
    rate: float = 500.0  # msgs/s offered in experiments 1 and 2 (deliveries/s = rate x users)
    ramp_s: float = 5.0
    duration_s: float = 20.0
    step_s: float = 10.0  # one step of a peak search
    peak_rates: list[float] = field(
        default_factory=lambda: [100, 250, 500, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
    )
    peak_strikes: int = 2  # the peak search stops after this many steps in a row over the p99
    # bound (at once on a verification failure)
    sync_rates: list[float] = field(default_factory=lambda: [50, 200, 500])  # experiment 2
    baseline_rates: list[float] = field(default_factory=lambda: [2, 5, 10, 20, 40, 80, 160])
    p99_ms: float = 200.0
    cross_users: int = 3
    cross_rate: float = 30.0
    cross_s: float = 15.0
    idle_connections: int = 10_000
    idle_room_size: int = 100
    latency_users: int = 100
    latency_rate: float = 50.0
    workers: int = 2
    sample_every: int = 20
    text_bytes: int = 32
    backlog_events: int = 0  # 0: the gateway's default
    backlog_bytes: int = 0
    out: str = ""  # results folder (default bench/results/<timestamp>)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BenchSettings:
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "0") not in ("", "0", "false", "no")
        s = cls(quick=quick)
        if quick:
            s.ramp_s, s.duration_s, s.step_s = 2.0, 5.0, 5.0
            s.peak_rates = [100, 250, 500, 1000, 2000, 3000]
            s.baseline_rates = [10, 20, 40, 80]
            s.cross_s = 5.0
            s.idle_connections = 3000  # the full run uses the 10,000
        for name, value in asdict(s).items():
            raw = env.get(f"BENCH_{name.upper()}")
            if raw is None or name == "quick":
                continue
            if isinstance(value, bool):
                setattr(s, name, raw not in ("", "0", "false", "no"))
            elif isinstance(value, int):
                setattr(s, name, int(raw))
            elif isinstance(value, float):
                setattr(s, name, float(raw))
            elif name == "experiments":
                setattr(s, name, [x.strip() for x in raw.split(",") if x.strip()])
            elif isinstance(value, list):
                setattr(s, name, _floats(raw))
            else:
                setattr(s, name, raw)
        return s

    def chat_env(self) -> dict[str, str]:
        """``CHAT_*`` for every chat process: the abuse limits opened up for one client host."""
        big = "1000000"
        env = {
            "CHAT_RATE_PER_S": big,
            "CHAT_RATE_BURST": big,
            "CHAT_USER_RATE_PER_S": big,
            "CHAT_USER_RATE_BURST": big,
            "CHAT_CONN_RATE_PER_IP": big,
            "CHAT_CONN_BURST_PER_IP": big,
            "CHAT_MAX_CONNECTIONS": str(max(20_000, 2 * self.idle_connections)),
            "CHAT_LOG_LEVEL": "warning",
        }
        if self.backlog_events:
            env["CHAT_MAX_BACKLOG_EVENTS"] = str(self.backlog_events)
        if self.backlog_bytes:
            env["CHAT_MAX_BACKLOG_BYTES"] = str(self.backlog_bytes)
        return env

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
