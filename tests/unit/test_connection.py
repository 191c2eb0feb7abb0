"""A connection's delivery rules: seq dedup, join buffering, bounded backlog."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.auth import Identity
from gateway.connection import Connection
from shared.config import Settings
from shared.metrics import GatewayMetrics


class Recorder:
    def __init__(self) -> None:
        self.dirty = 0
        self.slow = 0


def connection(**settings: Any) -> tuple[Connection, Recorder]:
    rec = Recorder()

    def on_dirty(_: Connection) -> None:
        rec.dirty += 1

    def on_slow(_: Connection) -> None:
        rec.slow += 1

    conn = Connection(
        None,  # type: ignore[arg-type]  # no socket: these rules never touch it
        Identity("u", "anonymous"),
        Settings(**settings),
        GatewayMetrics(CollectorRegistry()),
        on_dirty,
        on_slow,
    )
    return conn, rec


def outbox(conn: Connection) -> list[str]:
    return conn._outbox


def test_messages_not_newer_than_last_seq_are_dropped() -> None:
    conn, rec = connection()
    conn.rooms["r"] = 2
    for seq in [1, 2, 3, 3, 4]:
        conn.deliver("r", seq, f"m{seq}")
    conn.deliver("r", 0, "presence")  # not a message: always delivered
    assert outbox(conn) == ["m3", "m4", "presence"]
    assert rec.dirty == 1  # marked dirty once, when the outbox stopped being empty


def test_events_of_rooms_not_joined_are_ignored() -> None:
    conn, _ = connection()
    conn.deliver("elsewhere", 1, "m1")
    assert outbox(conn) == []


def test_join_buffers_live_events_until_joined() -> None:
    conn, _ = connection()
    conn.begin_join("r")
    conn.deliver("r", 4, "m4")  # published while the log was being read
    conn.deliver("r", 0, "presence")
    conn.deliver("r", 6, "m6")
    conn.finish_join("r", 5, "joined")  # the log covered up to 5
    assert outbox(conn) == ["joined", "presence", "m6"]
    assert conn.rooms["r"] == 6


def test_backlog_overflow_closes_4008_and_drops_the_backlog() -> None:
    conn, rec = connection(max_backlog_events=3)
    conn.rooms["r"] = 0
    for seq in range(1, 6):
        conn.deliver("r", seq, f"m{seq}")
    assert rec.slow == 1 and conn.closing and outbox(conn) == []
    conn.push("more")
    assert outbox(conn) == []


def test_backlog_byte_limit() -> None:
    conn, rec = connection(max_backlog_bytes=1024)
    conn.push("x" * 1000)
    conn.push("y" * 1000)
    assert rec.slow == 1


def test_one_large_event_alone_is_allowed() -> None:
    conn, rec = connection(max_backlog_bytes=1024)
    conn.push("x" * 5000)
    assert rec.slow == 0 and len(outbox(conn)) == 1


@pytest.mark.parametrize("code", [1001, 4029])
def test_other_closes_keep_pending_events(code: int) -> None:
    conn, _ = connection()
    conn.push("bye")
    conn.close(code)
    assert outbox(conn) == ["bye"] and conn.closing
