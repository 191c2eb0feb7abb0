"""Every knob of the benchmark, from ``BENCH_*`` environment variables.

``BENCH_QUICK=1`` shortens every phase (about 2 minutes in all)."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A comma list in the environment (``BENCH_PEAK_RATES=100,250``), not JSON.
Rates = Annotated[list[float], NoDecode]

MAX_CONNECTIONS = 20_000  # CHAT_MAX_CONNECTIONS at least: all clients come from one host

# What ``BENCH_QUICK=1`` changes, unless the variable of that field is set too.
QUICK = {
    "ramp_s": 2.0,
    "duration_s": 5.0,
    "step_s": 5.0,
    "peak_rates": [100, 250, 500, 1000, 2000, 3000],
    "baseline_rates": [10, 20, 40, 80],
    "cross_s": 5.0,
    "idle_connections": 3000,  # the full run uses the 10,000
    "rooms_users": 1000,
    "rooms_count": 200,
    "rooms_rates": [250, 500, 1000, 2000, 3000],
    "rooms_idle_s": 5.0,
    "rooms_trickle_s": 10.0,
    "compare_one_rates": [10, 50, 100, 400, 1000],
    "persister_rows": 20_000,  # experiment S: the full run drains 50,000
    "persister_sync_rows": 500,
}


class BenchSettings(BaseSettings):
    """Every field is a ``BENCH_<NAME>`` variable; lists are comma lists. Frozen."""

    # BENCH_* also holds other scripts' knobs (bench.publish, bench.persister): ignored here.
    # Defaults are not validated, so they keep their own types (the report prints them).
    model_config = SettingsConfigDict(
        env_prefix="BENCH_",
        frozen=True,
        extra="ignore",
        env_ignore_empty=True,
        validate_default=False,
    )

    quick: bool = False
    experiments: Annotated[list[str], NoDecode] = list("1234567LCRPS")
    users: int = 1000  # the big room
    users_small: int = 500  # experiment 1's smaller run
    rate: float = 500.0  # msgs/s offered in experiments 1 and 2 (deliveries/s = rate x users)
    ramp_s: float = 5.0
    duration_s: float = 20.0
    step_s: float = 10.0  # one step of a peak search
    peak_rates: Rates = [100, 250, 500, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
    peak_strikes: int = 2  # the peak search stops after this many steps in a row over the p99
    # bound (at once on a verification failure)
    sync_rates: Rates = [50, 200, 500]  # experiment 2
    baseline_rates: Rates = [2, 5, 10, 20, 40, 80, 160]
    p99_ms: float = 200.0
    cross_users: int = 3
    cross_rate: float = 30.0
    cross_s: float = 15.0
    idle_connections: int = 10_000
    idle_room_size: int = 100
    latency_users: int = 100
    latency_rate: float = 50.0
    # Experiment R: many small rooms (rooms of rooms_users / rooms_count members).
    rooms_users: int = 5000
    rooms_count: int = 1000
    rooms_per_user: int = 3  # the variant: rooms over one connection (rooms scaled to match)
    # Steps of 500 up to 3,000, where both stacks top out on the 2-core boxes measured so far.
    rooms_rates: Rates = [500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000]
    # Everyone connected and silent before the ladder: long enough to hold several presence
    # rounds (one every CHAT_PRESENCE_TTL_S / 3 = 10 s), whose cost is most of an idle gateway's.
    rooms_idle_s: float = 30.0
    # Then a trickle: what the persister costs per stored row at a low rate (target ≤ 50 µs).
    rooms_trickle_rate: float = 100.0
    rooms_trickle_s: float = 30.0
    # Experiment P: the one-room ladder shared by the project and its peers (msgs/s in).
    compare_one_rates: Rates = [10, 25, 50, 100, 200, 400, 700, 1000, 1250, 1500]
    # Experiment S: the persister's capacity (bench.persister): rows drained from a backlog by
    # the persister (batch 200, 1000; 2 and 3 replicas), and rows committed one at a time.
    persister_rows: int = 50_000
    persister_sync_rows: int = 3000
    workers: int = 2
    sample_every: int = 20
    text_bytes: int = 32
    backlog_events: int = 0  # 0: the gateway's default
    backlog_bytes: int = 0
    out: str = ""  # results folder (default bench/results/<timestamp>)

    @field_validator("quick", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        # Anything but 0/false/no switches it on, as the Makefile's BENCH_QUICK always did.
        return value not in ("0", "false", "no") if isinstance(value, str) else value

    @field_validator(
        "experiments",
        "peak_rates",
        "sync_rates",
        "baseline_rates",
        "rooms_rates",
        "compare_one_rates",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return (
            [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) else value
        )

    @model_validator(mode="after")
    def _quick_defaults(self) -> BenchSettings:
        # After validation, so these defaults too keep their own types.
        if self.quick:
            for name, value in QUICK.items():
                if name not in self.model_fields_set:
                    object.__setattr__(self, name, copy.deepcopy(value))
        return self

    def chat_env(self) -> dict[str, str]:
        """``CHAT_*`` for every chat process of the bench (see ``chat_env``)."""
        return chat_env(
            max(MAX_CONNECTIONS, 2 * self.idle_connections), self.backlog_events, self.backlog_bytes
        )


def chat_env(
    max_connections: int = MAX_CONNECTIONS, backlog_events: int = 0, backlog_bytes: int = 0
) -> dict[str, str]:
    """``CHAT_*`` for every chat process: the abuse limits opened up for one client host (0:
    the gateway's default backlog)."""
    big = "1000000"
    env = {
        "CHAT_RATE_PER_S": big,
        "CHAT_RATE_BURST": big,
        "CHAT_USER_RATE_PER_S": big,
        "CHAT_USER_RATE_BURST": big,
        "CHAT_CONN_RATE_PER_IP": big,
        "CHAT_CONN_BURST_PER_IP": big,
        "CHAT_MAX_CONNECTIONS": str(max_connections),
        "CHAT_LOG_LEVEL": "warning",
    }
    if backlog_events:
        env["CHAT_MAX_BACKLOG_EVENTS"] = str(backlog_events)
    if backlog_bytes:
        env["CHAT_MAX_BACKLOG_BYTES"] = str(backlog_bytes)
    return env
