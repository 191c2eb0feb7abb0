"""The whole topology: Redis (one server or a local cluster), MariaDB, a persister, N gateways,
nginx and, optionally, a Prometheus scraping them, started in order."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stack.cluster import LocalRedisCluster
from stack.processes import (
    ChatProcess,
    MariaDB,
    Nginx,
    Prometheus,
    RedisServer,
    free_port,
    wait_until,
)


@dataclass
class StackConfig:
    """What to run; the defaults are the production-like topology."""

    workdir: Path
    gateways: int = 3
    broker: Literal["redis", "memory"] = "redis"
    redis: Literal["single", "cluster"] = "single"  # cluster: 3 primaries + 3 replicas
    persist: Literal["async", "sync"] = "async"
    port: int = 8080
    persisters: int = 1
    env: dict[str, str] = field(default_factory=dict)  # extra CHAT_* for every chat process
    monitoring: bool = False  # a private Prometheus scraping gateways and persisters
    prometheus_port: int = 0  # 0: any free port
    scrape_interval: str = "5s"  # also the rules' evaluation interval


class Stack:
    """Starts every part, waits until each is ready, and stops them in reverse order."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        work = config.workdir
        self.redis: RedisServer | LocalRedisCluster = (
            LocalRedisCluster(work / "redis-cluster")
            if config.redis == "cluster"
            else RedisServer(work / "redis")
        )
        self.mariadb = MariaDB(work / "mariadb")
        self.persisters: list[ChatProcess] = []
        self.gateways: list[ChatProcess] = []
        self.nginx: Nginx | None = None
        self.prometheus: Prometheus | None = None

    @property
    def database_url(self) -> str:
        return self.mariadb.url("chat")

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    @property
    def ws_url(self) -> str:
        assert self.nginx is not None
        return self.nginx.ws_url

    def chat_env(self, **extra: str) -> dict[str, str]:
        """The ``CHAT_*`` variables every chat process of this stack gets."""
        return {
            "CHAT_BROKER": self.config.broker,
            "CHAT_REDIS_URL": self.redis.url,
            "CHAT_DATABASE_URL": self.database_url,
            "CHAT_PERSIST_MODE": self.config.persist,
            **self.config.env,
            **extra,
        }

    def start(self) -> Stack:
        """Start everything (a failure stops what was started, then raises)."""
        try:
            self.redis.start()
            self.mariadb.start()
            self.mariadb.create_database("chat")
            for i in range(self.config.persisters):
                self.add_persister(f"persister-{i}")
            for _ in range(self.config.gateways):
                self.add_gateway()
            self.nginx = Nginx(
                self.config.workdir / "nginx",
                port=self.config.port,
                upstreams=[f"127.0.0.1:{g.port}" for g in self.gateways],
            )
            self.nginx.start()
            if self.config.monitoring:
                self.prometheus = Prometheus(
                    self.config.workdir / "prometheus",
                    port=self.config.prometheus_port or free_port(),
                    scrape_interval=self.config.scrape_interval,
                    targets=self.scrape_targets(),
                )
                self.prometheus.start()
        except BaseException:
            self.stop()
            raise
        return self

    def add_persister(self, name: str) -> ChatProcess:
        persister = ChatProcess(
            self.config.workdir / "persister",
            module="persister",
            env=self.chat_env(CHAT_PERSISTER_ID=name),
        )
        self.persisters.append(persister.start())
        self.update_scrape_targets()
        return persister

    def add_gateway(self) -> ChatProcess:
        n = len(self.gateways)
        gateway = ChatProcess(
            self.config.workdir / "gateway",
            module="gateway",
            env=self.chat_env(CHAT_GATEWAY_ID=f"gateway-{n}"),
        )
        self.gateways.append(gateway.start())
        self.update_scrape_targets()
        return gateway

    def scrape_targets(self) -> dict[str, list[str]]:
        """What Prometheus scrapes: every gateway and persister (stopped ones show as down)."""
        return {
            "chat-gateway": [f"127.0.0.1:{g.port}" for g in self.gateways],
            "chat-persister": [f"127.0.0.1:{p.port}" for p in self.persisters],
        }

    def update_scrape_targets(self) -> None:
        if self.prometheus is not None:
            for job, targets in self.scrape_targets().items():
                self.prometheus.set_targets(job, targets)

    def kill_gateway(self, index: int, sig: int = signal.SIGKILL) -> int:
        """Stop one gateway with ``sig``; nginx keeps routing to the others."""
        return self.gateways[index].stop(sig)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until every running gateway answers ``/readyz`` with 200."""
        from stack.processes import http_get

        for gateway in self.gateways:
            if gateway.running:
                wait_until(
                    lambda g=gateway: http_get(g.url + "/readyz")[0] == 200,  # type: ignore[misc]
                    timeout,
                    f"{gateway.name} ready",
                )

    def redis_servers(self) -> list[RedisServer]:
        """The redis-server processes: one, or every node of the cluster."""
        return list(self.redis.nodes) if isinstance(self.redis, LocalRedisCluster) else [self.redis]

    def processes(self) -> list[Any]:
        parts: list[Any] = [*self.redis_servers(), self.mariadb, *self.persisters, *self.gateways]
        if self.nginx is not None:
            parts.append(self.nginx)
        if self.prometheus is not None:
            parts.append(self.prometheus)
        return parts

    def stop(self) -> None:
        """Stop in reverse order: Prometheus, nginx, gateways (1001 to clients), persisters
        (flush), stores."""
        for part in reversed(self.processes()):
            part.stop()
