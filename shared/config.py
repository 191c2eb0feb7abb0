"""Settings, built once from ``CHAT_*`` environment variables and passed down explicitly."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the gateway and the persister. Frozen: build it once, pass it in."""

    model_config = SettingsConfigDict(env_prefix="CHAT_", frozen=True, extra="ignore")

    # Where to listen.
    host: str = "127.0.0.1"
    port: int = 8000
    persister_port: int = 8001

    # Wiring.
    broker: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file in data_dir
    gateway_id: str = ""  # empty: derived from host name and pid
    persist_mode: Literal["async", "sync"] = "async"
    auth_secret: str = ""  # empty: anonymous mode
    shards: int = Field(default=48, ge=1, le=4096)  # see docs/cluster.md, "Shards"
    redis_pool_size: int = Field(default=64, ge=2)  # connections per process (plus pub/sub)
    # Redis Cluster: a publish is acknowledged once this many replicas have it (0: on the
    # primary's reply); if they do not within the timeout the client gets "unavailable" and
    # resends with the same cid.
    redis_replica_acks: int = Field(default=1, ge=0)
    redis_ack_timeout_ms: int = Field(default=500, ge=1)
    presence_ttl_s: float = Field(default=30.0, gt=0)  # a crashed gateway's users vanish after this

    # Persister.
    persister_id: str = ""  # consumer name in the group; empty: derived from host name and pid
    claim_idle_ms: int = Field(default=30000, ge=100)  # claim a dead replica's entries after
    batch_size: int = Field(default=200, ge=1)
    flush_interval_ms: int = Field(default=1000, ge=1)

    # Protocol limits (PROTOCOL.md).
    max_frame_bytes: int = Field(default=16 * 1024, ge=256)
    max_text_chars: int = Field(default=4000, ge=1)
    max_rooms: int = Field(default=100, ge=1)
    rate_per_s: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=40, ge=1)
    rate_strikes: int = Field(default=20, ge=1)  # rate_limited errors in a row before close 4029
    max_backlog_events: int = Field(default=1000, ge=1)
    max_backlog_bytes: int = Field(default=1024 * 1024, ge=1024)
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=40.0, gt=0)
    recent_log_size: int = Field(default=1000, ge=10)
    recover_limit: int = Field(default=1000, ge=1)
    cid_window_s: float = Field(default=300.0, gt=0)
    history_limit: int = Field(default=50, ge=1, le=100)

    # Admission and abuse limits.
    allowed_origins: str = ""  # comma-separated; empty: any Origin (and none) is accepted
    max_connections: int = Field(default=20000, ge=1)
    conn_rate_per_ip: float = Field(default=20.0, gt=0)  # new connections per second per address
    conn_burst_per_ip: int = Field(default=100, ge=1)
    trusted_proxies: str = "127.0.0.1/32,::1/128"  # whose X-Forwarded-For is believed
    user_rate_per_s: float = Field(default=40.0, gt=0)  # sends per user across its connections
    user_rate_burst: int = Field(default=80, ge=1)

    # Outbound coalescing: at most one flush to the sockets per this many ms.
    coalesce_ms: float = Field(default=10.0, ge=0)
    # Under load the window grows with the cost of a flush, up to this (gateway/hub.py). 100 ms:
    # nginx and the clients pay per frame too, unseen by the gateway (docs/benchmarks.md).
    coalesce_max_ms: float = Field(default=100.0, ge=0)
    ws_per_message_deflate: bool = False
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    log_level: str = "info"

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        if self.auth_secret and len(self.auth_secret.encode()) < 32:
            # HS256 with a short key is guessable offline from any token a user holds.
            raise ValueError("CHAT_AUTH_SECRET must be at least 32 bytes")
        # Derived defaults are filled here so every consumer sees one resolved value.
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{(self.data_dir / 'chat.db').resolve()}"
            )
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", f"{socket.gethostname()}-{os.getpid()}")
        if not self.persister_id:
            object.__setattr__(self, "persister_id", f"{socket.gethostname()}-{os.getpid()}")
        return self

    @property
    def allowed_origin_list(self) -> list[str]:
        """``CHAT_ALLOWED_ORIGINS`` split on commas."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``CHAT_TRUSTED_PROXIES`` split on commas."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def auth_mode(self) -> str:
        """``"token"`` when a secret is configured, else ``"anonymous"``."""
        return "token" if self.auth_secret else "anonymous"

    def limits(self) -> dict[str, float | int]:
        """The limits a client is told about in ``hello``."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_text_chars": self.max_text_chars,
            "max_rooms": self.max_rooms,
            "rate_per_s": self.rate_per_s,
            "rate_burst": self.rate_burst,
            "max_backlog_events": self.max_backlog_events,
            "max_backlog_bytes": self.max_backlog_bytes,
        }
