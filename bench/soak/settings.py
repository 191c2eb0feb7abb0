"""Every knob of the soak, from ``SOAK_*`` environment variables (the Makefile passes them)."""

from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SoakSettings(BaseSettings):
    """Every field is a ``SOAK_<NAME>`` variable; an empty one keeps the default. Frozen."""

    model_config = SettingsConfigDict(
        env_prefix="SOAK_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    seconds: float = 120.0  # traffic in all, warm-up included
    warmup_s: float = 5.0
    settle_s: float = 3.0
    users: int = 300
    rooms: int = 3
    rate: float = 50.0  # messages/s over all steady users
    churn_per_s: float = 20.0
    churn_timeout_s: float = 15.0  # one churn client's whole life, at most
    churn_inflight: int = 200
    gateways: int = 3
    workers: int = 1  # load-generator processes
    out: str = ""

    @model_validator(mode="after")
    def _short_warmup(self) -> SoakSettings:
        # At most half of a short soak is warm-up, so its other half is still measured.
        object.__setattr__(self, "warmup_s", min(self.warmup_s, self.seconds / 2))
        return self
