"""Gateways report each Redis node's memory (issue 13, item 5): ``chat_redis_used_memory_bytes``
and ``chat_redis_maxmemory_bytes`` labelled by node, sampled by the presence keeper, for the
"Redis memory high" alert (monitoring/prometheus/rules.yml)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.cluster import RedisCluster

from gateway.presence_redis import RedisPresence
from shared import redis_client
from shared.config import Settings
from shared.metrics import GatewayMetrics
from stack.cluster import LocalRedisCluster
from tests.conftest import RedisServer, http_get, wait_until

pytestmark = pytest.mark.anyio

USED, LIMIT = "chat_redis_used_memory_bytes", "chat_redis_maxmemory_bytes"


def samples(text: str) -> dict[tuple[str, str], float]:
    """(metric, node) → value of the Redis memory gauges in a Prometheus text page."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (USED, LIMIT):
                found[sample.name, sample.labels["node"]] = sample.value
    return found


def scrape(url: str) -> dict[tuple[str, str], float]:
    status, body = http_get(url + "/metrics")
    assert status == 200
    return samples(body.decode())


@pytest.fixture
def start_gateways(start_gateways_on: Any, redis_server: RedisServer) -> Any:
    return functools.partial(start_gateways_on, redis_server.url)


async def test_a_gateway_reports_its_redis_memory_and_maxmemory(
    start_gateways: Any, redis_server: RedisServer
) -> None:
    (gateway,) = start_gateways(1, chat_presence_ttl_s=0.3)  # the keeper samples every 0.1 s
    node = f"127.0.0.1:{redis_server.port}"
    await asyncio.to_thread(
        wait_until, lambda: (USED, node) in scrape(gateway.url), 15, "a memory sample"
    )
    first = scrape(gateway.url)
    assert first[USED, node] > 0 and first[LIMIT, node] == 0  # no maxmemory configured

    direct = redis.Redis.from_url(redis_server.url)
    direct.config_set("maxmemory", 64 * 1024 * 1024)
    direct.close()
    await asyncio.to_thread(
        wait_until,
        lambda: scrape(gateway.url).get((LIMIT, node)) == 64 * 1024 * 1024,
        15,
        "the new maxmemory",
    )


async def test_every_cluster_node_is_reported(cluster: LocalRedisCluster) -> None:
    settings = Settings(broker="redis", redis_url=cluster.url, gateway_id="gw0")
    client = redis_client.connect(cluster.url, pool_size=4)
    registry = CollectorRegistry()
    presence = RedisPresence(client, settings, GatewayMetrics(registry))
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        names = {node.name for node in client.get_nodes()}
        assert len(names) >= len(cluster.primaries())
        await presence.sample_memory()
        reported = samples(generate_latest(registry).decode())
        assert {node for _, node in reported} == names
        assert all(reported[USED, node] > 0 for node in names)
    finally:
        await client.aclose()


async def test_a_redis_that_does_not_answer_loses_its_samples(redis_server: RedisServer) -> None:
    settings = Settings(broker="redis", redis_url=redis_server.url, gateway_id="gw0")
    client = redis_client.connect(redis_server.url, pool_size=4, socket_timeout=1)
    registry = CollectorRegistry()
    presence = RedisPresence(client, settings, GatewayMetrics(registry))
    node = f"127.0.0.1:{redis_server.port}"
    try:
        await presence.sample_memory()
        assert (USED, node) in samples(generate_latest(registry).decode())
        await asyncio.to_thread(redis_server.stop)
        await presence.sample_memory()
        assert samples(generate_latest(registry).decode()) == {}  # no stale value stays
        await asyncio.to_thread(redis_server.start)
        await presence.sample_memory()
        assert (USED, node) in samples(generate_latest(registry).decode())
    finally:
        await client.aclose()
