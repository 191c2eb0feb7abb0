"""Every knob of the chaos run, from ``CHAOS_*`` environment variables (the Makefile passes
them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Every fault kind, in the order the report lists them.
KINDS = ("redis", "primary", "persister", "gateway", "mariadb", "nginx")
# The kinds that fit each Redis mode: one server is killed whole, a cluster loses a primary.
MODE_KINDS = {
    "single": ("redis", "persister", "gateway", "mariadb", "nginx"),
    "cluster": ("primary", "persister", "gateway", "mariadb", "nginx"),
}


class ChaosSettings(BaseSettings):
    """Every field is a ``CHAOS_<NAME>`` variable; an empty one keeps the default. Frozen."""

    model_config = SettingsConfigDict(
        env_prefix="CHAOS_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    seconds: float = 300.0  # traffic in all
    seed: int | None = None  # None: a fresh one, printed and written in the report
    users: int = 200
    rooms: int = 40  # users are spread evenly: 200 users in 40 rooms make rooms of 5
    rate: float = 2.0  # messages/s per user
    redis: Literal["single", "cluster"] = "single"
    gateways: int = 3
    # The fault kinds to draw from (comma list); empty: every kind of the Redis mode.
    faults: Annotated[list[str], NoDecode] = []
    # A fixed schedule instead of a random one: "5:gateway,10:persister" (seconds from start).
    schedule: Annotated[list[str], NoDecode] = []
    fault_every_s: float = 20.0  # mean gap between two faults (each gap drawn in 0.5x..1.5x)
    down_s: float = 3.0  # a killed process stays down a random 0.5 s .. this long
    quiet_start_s: float = 10.0  # no fault in the first seconds of traffic
    quiet_end_s: float = 20.0  # nor in the last ones (the system must be back before the end)
    drain_s: float = 90.0  # after the traffic: how long clients and the store may catch up
    out: str = ""  # the report (default bench/results/chaos-<timestamp>.md)
    workdir: str = ""  # keep the stack's data and logs there (default: a temporary directory)

    @field_validator("faults", "schedule", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [x.strip() for x in value.split(",") if x.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> ChaosSettings:
        allowed = MODE_KINDS[self.redis]
        kinds = self.faults or list(allowed)
        planned = [item.partition(":")[2] for item in self.schedule]
        wrong = [k for k in [*kinds, *planned] if k not in allowed]
        if wrong:
            raise ValueError(f"fault kinds {wrong} do not fit CHAOS_REDIS={self.redis}: {allowed}")
        for item in self.schedule:
            at, sep, _ = item.partition(":")
            try:
                float(at)
            except ValueError:
                sep = ""
            if not sep:
                raise ValueError(f"CHAOS_SCHEDULE item {item!r} is not <seconds>:<kind>")
        if self.users < self.rooms or self.rooms < 1:
            raise ValueError("CHAOS_USERS must be at least CHAOS_ROOMS (and rooms at least 1)")
        object.__setattr__(self, "faults", kinds)
        return self

    def chat_env(self) -> dict[str, str]:
        """``CHAT_*`` for every chat process: the abuse limits opened up, since every client
        comes from 127.0.0.1 and a killed gateway's clients all reconnect at once."""
        big = "1000000"
        return {
            "CHAT_RATE_PER_S": big,
            "CHAT_RATE_BURST": big,
            "CHAT_USER_RATE_PER_S": big,
            "CHAT_USER_RATE_BURST": big,
            "CHAT_CONN_RATE_PER_IP": big,
            "CHAT_CONN_BURST_PER_IP": big,
            "CHAT_JOIN_RATE_PER_S": big,
            "CHAT_JOIN_RATE_BURST": big,
            "CHAT_USER_JOIN_RATE_PER_S": big,
            "CHAT_USER_JOIN_RATE_BURST": big,
            "CHAT_LOG_LEVEL": "warning",
        }
