"""The soak's pieces that need no stack: Redis keys by kind, leak flags, the page, and the
Prometheus scrape both the bench and the soak read gauges with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import bench.run
from bench.soak.client import ChurnStats
from bench.soak.keyspace import redis_keys
from bench.soak.leaks import flags
from bench.soak.probe import Snapshot
from bench.soak.report import report
from bench.soak.settings import SoakSettings
from loadtests.runner import LoadConfig, LoadResult, PhaseResult
from loadtests.worker import Phase
from shared import keys


class FakeRedis:
    """What ``redis_keys`` asks of a client: SCAN, PTTL in a pipeline, INFO, DBSIZE."""

    def __init__(self, ttls: dict[str, int]) -> None:
        self.ttls = ttls
        self.asked: list[str] = []

    def scan_iter(self, count: int) -> Iterator[bytes]:
        return iter(k.encode() for k in self.ttls)

    def pipeline(self, transaction: bool) -> FakeRedis:
        return self

    def pttl(self, name: str) -> None:
        self.asked.append(name)

    def execute(self) -> list[int]:
        return [self.ttls[n] for n in self.asked]

    def info(self, section: str) -> dict[str, Any]:
        return {"used_memory": 3 * 2**20}

    def dbsize(self) -> int:
        return len(self.ttls)


def test_redis_keys_by_kind() -> None:
    shards = 48
    ttls = {}
    for room in ("soak-0", "soak-1", "soak-2"):  # tags like {s17.203}, not only {s<k>}
        ttls[keys.seq(room, shards)] = -1
        ttls[keys.log(room, shards)] = -1
        ttls[keys.cid(room, "u", "c1", shards)] = 300_000
        ttls[keys.cid(room, "u", "c2", shards)] = 300_000
        ttls[keys.presence(room, shards)] = 30_000
        ttls[keys.presence_user(room, "u", shards)] = 30_000
    ttls[keys.persist(0, shards)] = -1
    ttls["unrelated"] = -1
    out = redis_keys(FakeRedis(ttls))  # type: ignore[arg-type]
    assert out["keys"] == len(ttls)
    assert out["keys_without_ttl"] == 3 + 3 + 1 + 1
    assert out["used_memory_mb"] == 3.0
    assert {k: v for k, v in out.items() if k.startswith("keys:")} == {
        "keys:seq": 3, "keys:log": 3, "keys:persist": 1, "keys:cid": 6, "keys:presence": 3,
        "keys:presence_user": 3, "keys:lock": 0, "keys:other": 1,
    }  # fmt: skip


IDLE: Snapshot = {
    "gateway0": {"rss_mb": 50.0, "fds": 30.0, "tasks": 10.0, "connections": 0.0,
                 "local_rooms": 0.0, "client_sockets": 0.0, "redis_sockets": 2.0},
    "persister0": {"rss_mb": 40.0, "backlog": 0.0},
    "redis": {"rss_mb": 7.0, "keys_without_ttl": 0.0, "keys:presence": 0.0, "keys:lock": 0.0},
}  # fmt: skip


def test_a_clean_end_is_not_flagged() -> None:
    start = {**IDLE, "gateway0": {**IDLE["gateway0"], "redis_sockets": 40.0, "fds": 70.0}}
    # The Redis pool stays grown: its sockets are no leak.
    end = {**IDLE, "gateway0": {**start["gateway0"], "tasks": 12.0, "rss_mb": 55.0}}
    assert flags(IDLE, start, end) == {}


def test_leaks_are_flagged() -> None:
    end = {
        "gateway0": {**IDLE["gateway0"], "rss_mb": 61.0, "tasks": 20.0, "connections": 1.0,
                     "client_sockets": 1.0, "fds": 50.0},
        "persister0": {"rss_mb": 40.0, "backlog": 5.0},
        "redis": {"rss_mb": 7.0, "keys_without_ttl": 2.0, "keys:presence": 1.0,
                  "keys:lock": 0.0},
    }  # fmt: skip
    assert set(flags(IDLE, IDLE, end)) == {
        ("gateway0", "rss_mb"), ("gateway0", "tasks"), ("gateway0", "connections"),
        ("gateway0", "client_sockets"), ("gateway0", "fds"), ("persister0", "backlog"),
        ("redis", "keys_without_ttl"), ("redis", "keys:presence"),
    }  # fmt: skip


def test_report_page() -> None:
    p = PhaseResult("soak", 10.0, 50.0, True)
    p.counts = {"sent": 500, "delivered": 5000}
    p.latency.add(3.0)
    p.extras = {"gateway0.tasks": [10.0] * 5 + [30.0] * 5}
    config = LoadConfig(urls=["ws://x"], users=10, phases=[Phase("soak", 10.0, 50.0)])
    result = LoadResult(config, [p], connected=10)
    store = {"rooms": {"soak-0": {"redis_seq": 500, "rows": 500, "distinct": 500, "min": 1,
             "max": 500}}, "published": 500, "stored": 500, "sent": 500,
             "participants_open": 0}  # fmt: skip
    churn = ChurnStats(launched=10, ok=10, clean=5, abrupt=5, sent=10, echoed=10)
    text = report(SoakSettings(), (IDLE, IDLE, IDLE), result, churn, [], store, [], 12.0)
    assert "Nothing suspicious: every count back to idle, RSS within +20%." in text
    assert "| gateway0 | tasks | 10.0 | 30.0 | +20 (+200 %) |" in text
    assert "soak-0 500 rows seq 1..500 (redis 500); exactly once" in text
    assert text.endswith("**Verdict: verified**\n")


PAGE = b"""# HELP chat_connections Open connections
# TYPE chat_connections gauge
chat_connections 12.0
# TYPE chat_persist_rows_written_total counter
chat_persist_rows_written_total 1234.0
# TYPE chat_latency_seconds histogram
chat_latency_seconds_bucket{le="0.1"} 3.0
chat_latency_seconds_bucket{le="+Inf"} 5.0
chat_latency_seconds_count 5.0
chat_latency_seconds_sum 0.25
# TYPE chat_errors counter
chat_errors_total{code="x"} 2.0
"""


def test_scrape_keeps_unlabelled_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.run, "http_get", lambda url, timeout: (200, PAGE))
    assert bench.run.scrape("http://x/metrics") == {
        "chat_connections": 12.0,
        "chat_persist_rows_written_total": 1234.0,
        "chat_latency_seconds_count": 5.0,
        "chat_latency_seconds_sum": 0.25,
    }


def test_scrape_of_a_bad_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.run, "http_get", lambda url, timeout: (503, PAGE))
    assert bench.run.scrape("http://x/metrics") == {}
    monkeypatch.setattr(bench.run, "http_get", lambda url, timeout: (200, b"up 1\n}{ garbage"))
    assert bench.run.scrape("http://x/metrics") == {"up": 1.0}

    def refused(url: str, timeout: float) -> tuple[int, bytes]:
        raise ConnectionRefusedError

    monkeypatch.setattr(bench.run, "http_get", refused)
    assert bench.run.scrape("http://x/metrics") == {}
