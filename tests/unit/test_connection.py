"""A connection's delivery rules: seq dedup, join buffering, bounded backlog, frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.auth import Identity
from gateway.batch import Batch, frame_of
from gateway.connection import Connection
from gateway.hub import Stats
from shared import events
from shared.config import Settings
from shared.metrics import GatewayMetrics


class Recorder:
    def __init__(self) -> None:
        self.dirty = 0
        self.slow = 0


class FakeHub:
    """What a connection asks of its hub, recorded."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.stats = Stats()

    def mark_dirty(self, _: Connection) -> None:
        self.rec.dirty += 1

    def distribute(self) -> None:
        pass


def connection(**settings: Any) -> tuple[Connection, Recorder]:
    rec = Recorder()

    def on_slow(_: Connection) -> None:
        rec.slow += 1

    conn = Connection(
        None,  # type: ignore[arg-type]  # no socket: these rules never touch it
        Identity("u", "anonymous"),
        Settings(**settings),
        GatewayMetrics(CollectorRegistry()),
        FakeHub(rec),  # type: ignore[arg-type]
        on_slow,
    )
    return conn, rec


def msg(seq: int, room: str = "r") -> str:
    return events.encode(events.message(room, seq, "u", f"m{seq}", 1))


def batch(*seqs: int, room: str = "r") -> Batch:
    b = Batch(room)
    for seq in seqs:
        b.add(seq, msg(seq, room) if seq else '{"type":"presence"}')
    return b


def pending(conn: Connection) -> list[Any]:
    return [orjson.loads(e).get("seq", "p") for b in conn._outbox for e in b.events]


def test_messages_not_newer_than_last_seq_are_dropped() -> None:
    conn, rec = connection()
    conn.rooms["r"] = 2
    conn.deliver(batch(1, 2))  # all seen
    conn.deliver(batch(2, 3, 0, 4))  # partly seen, with a presence event
    conn.deliver(batch(4))  # seen now
    conn.deliver(batch(5, 6))
    assert pending(conn) == [3, "p", 4, 5, 6]
    assert conn.rooms["r"] == 6
    assert rec.dirty == 1  # marked once, when the outbox stopped being empty


def test_a_new_batch_is_shared_not_copied() -> None:
    conn, _ = connection()
    conn.rooms["r"] = 0
    shared = batch(1, 2)
    conn.deliver(shared)
    assert conn._outbox == [shared]
    assert frame_of(conn._outbox) is shared.frame


def test_events_of_rooms_not_joined_are_ignored() -> None:
    conn, _ = connection()
    conn.deliver(batch(1, room="elsewhere"))
    assert pending(conn) == []


def test_join_holds_live_batches_until_joined() -> None:
    conn, _ = connection()
    conn.begin_join("r")
    conn.deliver(batch(4, 0))  # published while the log was being read
    conn.deliver(batch(6))
    conn.finish_join("r", 5, '{"type":"joined"}')  # the log covered up to 5
    assert pending(conn) == ["p", "p", 6]  # joined, the presence event, then 6
    assert conn.rooms["r"] == 6


def test_backlog_overflow_closes_4008_and_drops_the_backlog() -> None:
    conn, rec = connection(max_backlog_events=3)
    conn.rooms["r"] = 0
    for seq in range(1, 6):
        conn.deliver(batch(seq))
    assert rec.slow == 1 and conn.closing and pending(conn) == []
    conn.push("more")
    assert pending(conn) == []


def test_backlog_byte_limit() -> None:
    conn, rec = connection(max_backlog_bytes=1024)
    conn.push('"' + "x" * 1000 + '"')
    conn.push('"' + "y" * 1000 + '"')
    assert rec.slow == 1


def test_one_large_event_alone_is_allowed() -> None:
    conn, rec = connection(max_backlog_bytes=1024)
    conn.push('"' + "x" * 5000 + '"')
    assert rec.slow == 0 and len(conn._outbox) == 1


@pytest.mark.parametrize("code", [1001, 4029])
def test_other_closes_keep_pending_events(code: int) -> None:
    conn, _ = connection()
    conn.push('{"type":"pong"}')
    conn.close(code)
    assert pending(conn) == ["p"] and conn.closing


def test_frames() -> None:
    one = Batch.of('{"type":"pong"}')
    assert frame_of([one]) == '{"type":"pong"}'
    two = batch(1, 2)
    assert orjson.loads(frame_of([two])) == [orjson.loads(msg(1)), orjson.loads(msg(2))]
    merged = orjson.loads(frame_of([one, two]))
    assert [e.get("seq") for e in merged] == [None, 1, 2]
