"""Prometheus metrics, registered on a registry the caller owns (no global state)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 500, 1000, 2000)


def asyncio_task_count() -> int:
    """Tasks alive in the running event loop (0 when called outside one)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


class GatewayMetrics:
    """What a gateway reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "chat_connections", "Open WebSocket connections", registry=registry
        )
        self.rooms = Gauge("chat_local_rooms", "Rooms with local members", registry=registry)
        self.messages_in = Counter(
            "chat_messages_published", "Messages accepted and published", registry=registry
        )
        self.events_out = Counter(
            "chat_events_delivered", "Events written to client sockets", registry=registry
        )
        self.frames_out = Counter("chat_frames_sent", "WebSocket frames sent", registry=registry)
        self.coalesced = Counter(
            "chat_events_coalesced", "Events sent inside multi-event frames", registry=registry
        )
        self.coalesce_window = Gauge(
            "chat_coalesce_window_seconds",
            "Current flush window (grows with the cost of a flush under load)",
            registry=registry,
        )
        self.slow_closed = Counter(
            "chat_slow_consumers_closed", "Connections closed 4008 (slow)", registry=registry
        )
        self.broker_up = Gauge(
            "chat_broker_up", "1 while the broker subscriber is connected", registry=registry
        )
        self.broker_reconnects = Counter(
            "chat_broker_reconnects", "Times the broker subscriber reconnected", registry=registry
        )
        self.refused = Counter(
            "chat_connections_refused",
            "Connections closed before hello (origin, capacity, address rate, identity)",
            ["code"],
            registry=registry,
        )
        self.errors = Counter(
            "chat_protocol_errors", "error events sent", ["code"], registry=registry
        )
        self.deliver_latency = Histogram(
            "chat_publish_to_deliver_seconds",
            "Server time from publish to fan-out on this gateway",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.asyncio_tasks = Gauge(
            "chat_asyncio_tasks", "asyncio tasks alive in this process", registry=registry
        )
        # Sampled by the presence keeper (gateway/presence_redis.py), one series per Redis node.
        self.redis_used_memory = Gauge(
            "chat_redis_used_memory_bytes",
            "Memory the Redis node uses (INFO memory: used_memory)",
            ["node"],
            registry=registry,
        )
        self.redis_maxmemory = Gauge(
            "chat_redis_maxmemory_bytes",
            "The Redis node's maxmemory (0: no limit)",
            ["node"],
            registry=registry,
        )


class PersisterMetrics:
    """What the persister reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "chat_persist_batch_size", "Entries per batch", buckets=BATCH_BUCKETS, registry=registry
        )
        self.insert_latency = Histogram(
            "chat_persist_insert_seconds",
            "Time to write one batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows_written = Counter(
            "chat_persist_rows_written", "Message rows written", registry=registry
        )
        self.conflicts = Counter(
            "chat_persist_conflicts",
            "Messages whose (room, seq) another message already had (kept in message_conflict)",
            registry=registry,
        )
        self.write_failures = Counter(
            "chat_persist_write_failures", "Batch writes that failed (retried)", registry=registry
        )
        self.lag = Gauge(
            "chat_persist_lag_seconds",
            "Age of the oldest message not yet written",
            registry=registry,
        )
        self.redeliveries = Counter(
            "chat_persist_redeliveries",
            "Own pending entries re-read after a restart",
            registry=registry,
        )
        self.claimed = Counter(
            "chat_persist_claimed", "Stale entries claimed from dead consumers", registry=registry
        )
        self.malformed = Counter(
            "chat_persist_malformed", "Unreadable entries dropped", registry=registry
        )
        self.backlog = Gauge(
            "chat_persist_backlog", "Entries waiting to be written", registry=registry
        )


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
