"""Settings, built once from ``CHAT_*`` environment variables and passed down explicitly."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CHAT_"


class Settings(BaseSettings):
    """Every knob of the gateway and the persister. Frozen: build it once, pass it in."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Where to listen.
    host: str = "127.0.0.1"
    port: int = 8000
    persister_port: int = 8001

    # Wiring.
    broker: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("data")
    # Derived defaults (resolved by the validators below, so every consumer sees one value):
    database_url: str = Field(default="", validate_default=True)  # empty: SQLite file in data_dir
    gateway_id: str = Field(default="", validate_default=True)  # empty: host name and pid
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
    # A room's Redis state (seq, recent log, verified marker, rooms index entry) expires after
    # this long without a publish or a join that reads its seq; its seq and history then come
    # from the database. Keep it far above any persister outage you tolerate: a room that
    # expires while its messages still wait in a persist stream would continue from the
    # database's last seq (docs/architecture.md, "Per-room state").
    room_idle_ttl_s: float = Field(default=7 * 24 * 3600.0, ge=1)

    # Persister.
    # The consumer name in the group; empty: derived from host name and pid.
    persister_id: str = Field(default="", validate_default=True)
    claim_idle_ms: int = Field(default=30000, ge=100)  # claim a dead replica's entries after
    batch_size: int = Field(default=200, ge=1)
    flush_interval_ms: int = Field(default=1000, ge=1)
    migrate: bool = True  # bring the database schema to head at start (see shared/migrations)

    # Protocol limits (docs/protocol.md).
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
    # Joins (each may create a room's state in Redis): per connection, and per user.
    join_rate_per_s: float = Field(default=5.0, gt=0)
    join_rate_burst: int = Field(default=20, ge=1)
    user_join_rate_per_s: float = Field(default=10.0, gt=0)
    user_join_rate_burst: int = Field(default=40, ge=1)

    # Outbound coalescing: at most one flush to the sockets per this many ms.
    coalesce_ms: float = Field(default=2.0, ge=0)
    # Under load the window grows with the cost of a flush, up to this (gateway/hub.py). 100 ms:
    # nginx and the clients pay per frame too, unseen by the gateway (docs/benchmarks.md).
    coalesce_max_ms: float = Field(default=100.0, ge=0)
    ws_per_message_deflate: bool = False
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    # /healthz fails once a background task (Redis subscriber, presence) is down this long.
    unhealthy_after_s: float = Field(default=60.0, gt=0)
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for collectors

    @field_validator("auth_secret")
    @classmethod
    def _long_enough(cls, secret: str) -> str:
        # HS256 with a short key is guessable offline from any token a user holds.
        if secret and len(secret.encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        return secret

    @field_validator("database_url")
    @classmethod
    def _sqlite_in_data_dir(cls, url: str, info: ValidationInfo) -> str:
        data_dir = info.data.get("data_dir")
        if url or data_dir is None:  # no data_dir: its own error is reported
            return url
        return f"sqlite:///{(data_dir / 'chat.db').resolve()}"

    @field_validator("gateway_id", "persister_id")
    @classmethod
    def _host_and_pid(cls, name: str) -> str:
        return name or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def allowed_origin_list(self) -> list[str]:
        """``CHAT_ALLOWED_ORIGINS`` split on commas."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``CHAT_TRUSTED_PROXIES`` split on commas."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def room_idle_ttl_ms(self) -> int:
        """``CHAT_ROOM_IDLE_TTL_S`` in milliseconds, as the Redis scripts take it."""
        return round(self.room_idle_ttl_s * 1000)

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


def load_settings() -> Settings:
    """The settings of an entry point, from its environment. When a ``CHAT_*`` variable is
    invalid, print ``invalid setting CHAT_X: <rule>`` (one line per variable) on stderr and exit
    with status 2: no traceback, and nothing starts.
    """
    try:
        return Settings()
    except ValidationError as exc:
        for line in setting_errors(exc):
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


def setting_errors(exc: ValidationError) -> list[str]:
    """One line per invalid variable (the rules one variable breaks share its line)."""
    rules: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):  # never echo a secret
        name = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else "settings"
        rules.setdefault(name, []).append(_rule(error["msg"]))
    return [f"invalid setting {name}: {'; '.join(broken)}" for name, broken in rules.items()]


def _rule(message: str) -> str:
    """pydantic's message, worded as a rule: "Input should be X" becomes "must be X", and the
    "Value error, " prefix of our own checks (which already say "must ...") goes."""
    message = message.removeprefix("Value error, ")
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    return message
