"""The load generator's checks: seq gaps, duplicates, reordering, echoes, array unpacking."""

from __future__ import annotations

from typing import Any

import orjson

from loadtests.verify import RoomSeq, Tally, UserVerifier, sent_at, unpack


def msg(
    seq: int, user: str = "bob", room: str = "r", ts: int = 1000, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "message",
        "room": room,
        "seq": seq,
        "user": user,
        "text": "t",
        "ts": ts,
        **extra,
    }


def frame(*events: Any) -> bytes:
    return orjson.dumps(list(events) if len(events) != 1 else events[0])


def joined_user(*rooms: str, seq: int = 0, user: str = "alice") -> UserVerifier:
    v = UserVerifier(user, Tally(sample_every=1))
    hello = {"type": "hello", "user": user, "gateway": "g1"}
    joins = [
        {"type": "joined", "room": r, "seq": seq, "members": [], "messages": []} for r in rooms
    ]
    v.on_frame(frame(hello, *joins), 1000)
    return v


def test_unpack_single_and_array() -> None:
    assert unpack({"type": "pong"}) == [{"type": "pong"}]
    assert unpack([1, 2]) == [1, 2]
    assert unpack([]) == []


def test_room_seq_classifies() -> None:
    s = RoomSeq(0)
    assert [s.accept(x) for x in (1, 2, 5, 3, 3, 4, 6, 2)] == [
        "ok", "ok", "gap", "reordered", "duplicate", "reordered", "ok", "duplicate",
    ]  # fmt: skip
    assert s.missing == set()


def test_in_order_arrays_count_every_message_once() -> None:
    v = joined_user("r", seq=10)
    v.on_frame(frame(msg(11)), 1005)
    v.on_frame(frame(msg(12), msg(13), msg(14)), 1006)
    t = v.tally
    assert (t.delivered, t.frames, t.gaps, t.duplicates) == (4, 3, 0, 0)
    assert v.last_seqs() == {"r": 14}
    assert t.other_events == 2  # hello, joined


def test_gap_inside_an_array_is_found() -> None:
    v = joined_user("r")
    v.on_frame(frame(msg(1), msg(3), msg(4)), 1000)
    assert v.tally.gaps == 1
    assert v.missing() == 1
    v.on_frame(frame(msg(2)), 1000)  # late: reordered, no longer missing
    assert v.tally.reordered == 1
    assert v.missing() == 0


def test_swapped_pair_and_duplicate_in_an_array() -> None:
    v = joined_user("r")
    v.on_frame(frame(msg(2), msg(1), msg(3)), 1000)
    assert (v.tally.gaps, v.tally.reordered) == (1, 1)
    v.on_frame(frame(msg(4), msg(4)), 1000)
    assert v.tally.duplicates == 1
    assert v.tally.delivered == 4


def test_duplicate_with_same_first_and_last_is_caught() -> None:
    v = joined_user("r")
    v.on_frame(frame(msg(1), msg(1), msg(3)), 1000)  # first/last/length look right
    assert v.tally.duplicates == 1
    assert v.tally.gaps == 1


def test_echoes_clear_pending_sends() -> None:
    v = joined_user("r")
    v.sent("c1")
    v.sent("c2")
    v.on_frame(frame(msg(1, user="bob", cid="c1"), msg(2, user="alice", cid="c1")), 1000)
    assert v.pending == {"c2"}  # bob's c1 is not alice's echo
    v.on_frame(frame(msg(3, user="alice", cid="c2")), 1000)
    assert v.pending == set()
    assert (v.tally.sent, v.tally.echoed) == (2, 2)


def test_refused_send_is_an_error_not_a_missing_echo() -> None:
    v = joined_user("r")
    v.sent("c1")
    v.on_frame(frame({"type": "error", "code": "rate_limited", "detail": "", "cid": "c1"}), 0)
    assert v.pending == set()
    assert v.tally.errors == {"rate_limited": 1}


def test_several_rooms_are_tracked_apart() -> None:
    v = joined_user("a", "b")
    v.on_frame(frame(msg(1, room="a"), msg(1, room="b"), msg(2, room="a")), 1000)
    assert v.tally.gaps == 0
    assert v.last_seqs() == {"a": 2, "b": 1}
    v.on_frame(frame(msg(1, room="c")), 1000)
    assert v.tally.unexpected == 1


def test_presence_mixed_in_takes_the_slow_path() -> None:
    v = joined_user("r")
    presence = {"type": "presence", "room": "r", "joined": ["x"], "left": []}
    v.on_frame(frame(msg(1), presence, msg(2)), 1000)
    assert (v.tally.delivered, v.tally.gaps, v.tally.other_events) == (2, 0, 3)


def test_latency_is_sampled_every_kth_message_across_frames() -> None:
    t = Tally(sample_every=3)
    v = UserVerifier("alice", t)
    v.on_frame(frame({"type": "hello", "user": "alice", "gateway": "g"},
                     {"type": "joined", "room": "r", "seq": 0}), 0)  # fmt: skip
    ts = 0
    seq = 0
    for size in (1, 2, 4, 1, 5):  # 13 messages: samples at 0, 3, 6, 9, 12
        events = []
        for _ in range(size):
            seq += 1
            events.append(msg(seq, ts=ts))
            ts += 1
        v.on_frame(frame(*events), 100)
    assert t.latency.count == 5
    assert t.latency.max == 100


def test_sender_tracking_counts_per_sender() -> None:
    v = UserVerifier("alice", Tally(), track_senders=True)
    v.on_frame(
        frame({"type": "hello", "gateway": "g"}, {"type": "joined", "room": "r", "seq": 0}), 0
    )
    v.on_frame(frame(msg(1, user="bob"), msg(2, user="carol"), msg(3, user="bob")), 0)
    assert v.senders == {"bob": 2, "carol": 1}


def test_latency_runs_from_the_send_time_at_the_head_of_the_text() -> None:
    # The load generator's texts lead with the client's send time: end to end, as the peers.
    assert sent_at({"text": "1000.5 run-7 xxxx", "ts": 1003}) == 1000.5
    # Any other text: the server's publish time.
    assert sent_at({"text": "hello there", "ts": 1003}) == 1003.0
    assert sent_at({"text": "12ab x", "ts": 7}) == 7.0
    assert sent_at({"ts": 9}) == 9.0
