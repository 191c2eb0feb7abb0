"""The load generator's Socket.IO mode: Engine.IO v4 packets, send payloads, and the per-sender
checks (gaps, reordering, duplicates, echoes) counted into the same Tally as the project's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from loadtests.client import user_class
from loadtests.socketio import (
    CONNECT,
    CONNECT_ERROR,
    PONG,
    Packet,
    SocketIOPayloads,
    SocketIOUser,
    SocketIOVerifier,
    event_frame,
    parse,
)
from loadtests.verify import Tally, UserVerifier

OPEN = b'0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1e6}'


def message(sender: str, n: int, room: str = "r", ts: float = 1000.0, **extra: Any) -> bytes:
    payload = {"room": room, "user": sender, "n": n, "cid": f"c{n}", "ts": ts, "text": "t"}
    return event_frame("message", {**payload, **extra})


def connected(*rooms: str, user: str = "alice") -> tuple[SocketIOVerifier, list[bytes]]:
    """A verifier through open, connect ack and hello; and what it replied."""
    replies: list[bytes] = []
    v = SocketIOVerifier(user, Tally(sample_every=1))
    v.reply = replies.append
    v.expect(rooms or ("r",))
    v.on_frame(OPEN, 0)
    v.on_frame(b'40{"sid":"s1"}', 0)
    v.on_frame(event_frame("hello", {"gateway": "peer2"}), 0)
    return v, replies


# -- packets ------------------------------------------------------------------------------


def test_parse_engine_packets() -> None:
    assert parse(OPEN) == Packet("open", data=orjson.loads(OPEN[1:]))
    assert parse(b"2") == Packet("ping")
    assert parse("3") == Packet("pong")
    assert parse(b"6").kind == "noop"
    assert parse(b"1").kind == "close"


def test_parse_socket_packets() -> None:
    assert parse(b'40{"sid":"x"}') == Packet("connect", data={"sid": "x"})
    assert parse(b"41") == Packet("disconnect")
    assert parse(b'44{"message":"no"}') == Packet("connect_error", data={"message": "no"})
    assert parse(b'42["message",{"a":1}]') == Packet("event", "message", {"a": 1})
    assert parse(b'4212["ev",1]') == Packet("event", "ev", 1)  # with an ack id
    assert parse(b'42/chat,["ev"]') == Packet("event", "ev", None)  # another namespace
    assert parse(memoryview(b'43["ok"]')).kind == "ack"


@pytest.mark.parametrize("frame", [b"", b"9", b"4", b"49", b"42{}", b"42[1]", b"42[", b"0{"])
def test_parse_refuses_malformed_frames(frame: bytes) -> None:
    with pytest.raises(ValueError):
        parse(frame)


def test_event_frame_round_trips() -> None:
    frame = event_frame("send", {"room": "r", "text": "é"})
    assert frame.startswith(b'42["send",')
    assert parse(frame) == Packet("event", "send", {"room": "r", "text": "é"})


def test_payloads_count_per_sender_and_room() -> None:
    p = SocketIOPayloads(text_bytes=16)
    sent = [
        parse(p.send(room, f"c{i}", user)).data
        for i, (room, user) in enumerate([("a", "u1"), ("a", "u1"), ("b", "u1"), ("a", "u2")])
    ]
    assert [(s["room"], s["user"], s["n"]) for s in sent] == [
        ("a", "u1", 0), ("a", "u1", 1), ("b", "u1", 0), ("a", "u2", 0),
    ]  # fmt: skip
    assert all(len(s["text"]) == 16 and s["text"].startswith(s["cid"]) for s in sent)
    assert all(isinstance(s["ts"], float) for s in sent)


# -- the handshake --------------------------------------------------------------------------


def test_handshake_replies_and_joins_on_the_connect_ack() -> None:
    replies: list[bytes] = []
    v = SocketIOVerifier("alice", Tally())
    v.reply = replies.append
    v.expect(["r1", "r2"])
    v.on_frame(OPEN, 0)
    assert replies == [CONNECT] and not v.connected and v.rooms == {}
    v.on_frame(b'40{"sid":"s1"}', 0)
    assert v.connected and set(v.rooms) == {"r1", "r2"}
    v.on_frame(event_frame("hello", {"gateway": "peer3"}), 0)
    assert v.gateway == "peer3"
    v.on_frame(b"2", 0)
    assert replies == [CONNECT, PONG]
    t = v.tally
    assert (t.frames, t.other_events, t.delivered, t.unexpected) == (4, 4, 0, 0)


def test_connect_error_is_counted_and_refuses() -> None:
    v = SocketIOVerifier("alice", Tally())
    v.on_frame(b'44{"message":"Not authorized"}', 0)
    assert not v.connected
    assert v.last_error == CONNECT_ERROR
    assert v.tally.errors == {CONNECT_ERROR: 1}
    assert "Not authorized" in v.tally.anomalies[0]


def test_user_class_registers_socketio_and_needs_its_verifier() -> None:
    cls = user_class("socketio")
    assert cls is SocketIOUser
    user = cls("ws://127.0.0.1:1/socket.io/?user=a&room=r", SocketIOVerifier("a", Tally()), ["r"])
    assert user.url.endswith("?user=a&room=r&EIO=4&transport=websocket")
    with pytest.raises(TypeError):
        cls("ws://127.0.0.1:1/socket.io/", UserVerifier("a", Tally()), ["r"])


def test_ready_once_the_connect_ack_arrived_or_refused() -> None:
    ok = SocketIOUser("ws://h/socket.io/", SocketIOVerifier("a", Tally()), ["r"])
    ok.verifier.on_frame(OPEN, 0)
    ok._check_ready()
    assert not ok.ready.is_set()
    assert ok._early == [CONNECT]  # no transport yet: sent once ``connect`` returns
    ok.verifier.on_frame(b'40{"sid":"s"}', 0)
    ok._check_ready()
    assert ok.ready.is_set() and not ok.refused
    refused = SocketIOUser("ws://h/socket.io/", SocketIOVerifier("b", Tally()), ["r"])
    refused.verifier.on_frame(b'44{"message":"no"}', 0)
    refused._check_ready()
    assert refused.ready.is_set() and refused.refused == CONNECT_ERROR


# -- deliveries -----------------------------------------------------------------------------


def test_in_order_streams_of_several_senders() -> None:
    v, _ = connected()
    for n in range(3):
        v.on_frame(message("bob", n), 1005)
        v.on_frame(message("carol", n), 1007)
    t = v.tally
    assert (t.delivered, t.gaps, t.reordered, t.duplicates, t.unexpected) == (6, 0, 0, 0, 0)
    assert v.last_seqs() == {"r/bob": 2, "r/carol": 2}
    assert v.rooms["r"].last == 6  # messages received in the room
    assert v.missing() == 0
    assert sorted(t.latency.take().counts) == [50, 70]  # 5 ms and 7 ms, 0.1 ms buckets


def test_gap_then_reorder_then_duplicate() -> None:
    v, _ = connected()
    for n in (0, 1, 4, 2, 2, 3, 5):
        v.on_frame(message("bob", n), 1000)
    t = v.tally
    assert (t.gaps, t.reordered, t.duplicates, t.delivered) == (1, 2, 1, 6)
    assert v.missing() == 0
    assert any("gap bob#4 after #1" in a for a in t.anomalies)


def test_never_filled_gap_is_missing() -> None:
    v, _ = connected()
    for n in (0, 3):
        v.on_frame(message("bob", n), 1000)
    assert v.tally.gaps == 1 and v.missing() == 2


def test_a_late_first_message_is_a_gap() -> None:
    """Everyone joins before anyone sends: a sender's first message seen must be its 0th."""
    v, _ = connected()
    v.on_frame(message("bob", 2), 1000)
    assert v.tally.gaps == 1 and v.missing() == 2


def test_counters_are_per_room() -> None:
    v, _ = connected("a", "b")
    for room, n in (("a", 0), ("b", 0), ("a", 1), ("b", 1)):
        v.on_frame(message("bob", n, room=room), 1000)
    assert v.tally.gaps == 0
    assert v.last_seqs() == {"a/bob": 1, "b/bob": 1}


def test_own_echo_answers_the_pending_send() -> None:
    v, _ = connected()
    v.sent("c0")
    v.sent("c1")
    assert v.pending == {"c0", "c1"} and v.sent_count == 2 and v.tally.sent == 2
    v.on_frame(message("alice", 0, cid="c0"), 1000)
    v.on_frame(message("bob", 0, cid="c1"), 1000)  # someone else's cid answers nothing
    assert v.pending == {"c1"} and v.tally.echoed == 1
    v.on_frame(message("alice", 0, cid="c0"), 1000)  # a duplicate echo is not counted twice
    assert v.tally.echoed == 1 and v.tally.duplicates == 1


def test_track_senders_counts_new_deliveries_only() -> None:
    v = SocketIOVerifier("alice", Tally(), track_senders=True)
    v.expect(["r"])
    v.on_frame(b'40{"sid":"s"}', 0)
    for n in (0, 1, 1):
        v.on_frame(message("bob", n), 1000)
    assert v.senders == {"bob": 2}


@pytest.mark.parametrize(
    "frame",
    [
        message("bob", 0, room="elsewhere"),  # a room the user is not in
        event_frame("message", [1, 2]),
        event_frame("message", {"room": "r", "user": "bob", "n": "0", "ts": 1}),
        event_frame("message", {"room": "r", "user": "bob", "n": 0}),  # no ts
        b"not a packet",
    ],
)
def test_malformed_messages_are_unexpected(frame: bytes) -> None:
    v, _ = connected()
    v.on_frame(frame, 1000)
    assert (v.tally.unexpected, v.tally.delivered) == (1, 0)


def test_messages_before_the_connect_ack_are_unexpected() -> None:
    v = SocketIOVerifier("alice", Tally())
    v.expect(["r"])
    v.on_frame(message("bob", 0), 1000)
    assert (v.tally.unexpected, v.tally.delivered) == (1, 0)
