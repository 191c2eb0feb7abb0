"""The chaos verdict on crafted logs: a clean run passes; a lost message, a duplicate, a reused
seq and a reordered delivery are each detected, with their evidence. Also the schedule and the
per-fault recovery figures."""

from __future__ import annotations

import pytest

from bench.chaos.records import ClientLog, Disconnect, FaultRecord, Row, SendRecord
from bench.chaos.recovery import recoveries
from bench.chaos.schedule import plan
from bench.chaos.settings import ChaosSettings
from bench.chaos.verify import verify

ROOM = "chaos-0"


def acked(user: str, n: int, seq: int, at: float = 0.0) -> SendRecord:
    return SendRecord(user, ROOM, f"c-{user}-{n}", f"{user} #{n}", at, "acked", seq, "", at + 0.01)


def member(user: str, deliveries: list[tuple[int, str, str]], baseline: int = 0) -> ClientLog:
    log = ClientLog(user, ROOM)
    log.joined(baseline)
    for seq, text, sender in deliveries:
        log.receive(seq, text, sender)
    return log


def clean_run() -> tuple[list[SendRecord], list[ClientLog], list[Row]]:
    """Alice and Bob in one room; alice sends three messages, all acknowledged."""
    sends = [acked("alice", n, n) for n in (1, 2, 3)]
    seen = [(n, f"alice #{n}", "alice") for n in (1, 2, 3)]
    logs = [member("alice", seen), member("bob", seen)]
    rows = [Row(ROOM, n, f"alice #{n}") for n in (1, 2, 3)]
    return sends, logs, rows


def test_a_clean_run_passes_with_its_counts() -> None:
    sends, logs, rows = clean_run()
    refused = SendRecord("bob", ROOM, "c-bob-1", "bob #1", 1.0, "refused", None, "unavailable")
    unanswered = SendRecord("bob", ROOM, "c-bob-2", "bob #2", 2.0)
    v = verify([*sends, refused, unanswered], logs, rows)
    assert v.passed and not v.issues
    assert (v.sent, v.acked, v.refused, v.unanswered) == (5, 3, 1, 1)
    assert v.refusals == {"unavailable": 1}
    assert (v.delivered, v.expected_deliveries, v.stored, v.received) == (6, 6, 3, 6)
    assert (v.lost, v.duplicated, v.reused, v.reordered, v.unacked_existing) == (0, 0, 0, 0, 0)


def test_an_acknowledged_message_missing_from_a_member_is_lost() -> None:
    sends, logs, rows = clean_run()
    logs[1] = member("bob", [(1, "alice #1", "alice"), (3, "alice #3", "alice")])
    v = verify(sends, logs, rows)
    assert not v.passed
    assert (v.lost, v.lost_deliveries, v.lost_rows) == (1, 1, 0)
    [issue] = v.issues
    assert (issue.kind, issue.room, issue.seq) == ("lost", ROOM, 2)
    assert "not delivered to bob" in issue.detail


def test_an_acknowledged_message_missing_from_the_store_is_lost() -> None:
    sends, logs, rows = clean_run()
    v = verify(sends, logs, rows[:2])
    assert (v.lost, v.lost_rows, v.lost_deliveries) == (1, 1, 0)
    assert "not stored" in v.issues[0].detail and v.issues[0].seq == 3


def test_a_message_sent_before_a_member_joined_is_not_expected_of_it() -> None:
    sends, logs, rows = clean_run()
    logs.append(member("carol", [(3, "alice #3", "alice")], baseline=2))
    v = verify(sends, logs, rows)
    assert v.passed and v.expected_deliveries == 7


def test_a_seq_delivered_twice_is_a_duplicate() -> None:
    sends, logs, rows = clean_run()
    logs[1].receive(2, "alice #2", "alice")  # a replay that repeated what bob had
    v = verify(sends, logs, rows)
    assert (v.duplicated, v.lost, v.reordered) == (1, 0, 0) and not v.passed
    assert v.issues[0].kind == "duplicated" and "twice to bob" in v.issues[0].detail
    assert "received in this order: 1 2 3 [2]" in v.issues[0].detail


def test_one_message_under_two_seqs_is_a_duplicate() -> None:
    sends, logs, rows = clean_run()
    rows.append(Row(ROOM, 4, "alice #3"))  # stored again under another seq
    v = verify(sends, logs, rows)
    assert v.duplicated == 1 and v.reused == 0 and not v.passed
    assert "chaos-0 seq 3, chaos-0 seq 4" in v.issues[0].detail


def test_a_seq_given_to_two_texts_is_a_reused_seq() -> None:
    sends, logs, rows = clean_run()
    # Bob's own message was acknowledged with alice's seq 2 (and never stored under it).
    sends.append(acked("bob", 1, 2))
    v = verify(sends, logs, rows)
    assert v.reused == 1 and not v.passed
    issue = next(i for i in v.issues if i.kind == "reused")
    assert (issue.room, issue.seq) == (ROOM, 2)
    assert "'alice #2'" in issue.detail and "'bob #1' (echo to bob)" in issue.detail


def test_a_conflict_row_is_a_reused_seq() -> None:
    sends, logs, rows = clean_run()
    v = verify(sends, logs, rows, conflicts=[Row(ROOM, 3, "someone else")])
    assert (v.reused, v.conflicts) == (1, 1) and not v.passed
    assert "message_conflict" in v.issues[0].detail


def test_an_unacknowledged_message_that_exists_must_be_consistent_too() -> None:
    sends, logs, rows = clean_run()
    unanswered = SendRecord("bob", ROOM, "c-bob-1", "bob #1", 1.0)
    ok = verify([*sends, unanswered], logs, [*rows, Row(ROOM, 4, "bob #1")])
    assert ok.passed and ok.unacked_existing == 1 and ok.unanswered == 1
    # The same unanswered message stored over an acknowledged one's seq: a reused seq.
    bad = verify([*sends, unanswered], logs, [*rows[:2], Row(ROOM, 3, "bob #1")])
    assert bad.reused == 1 and bad.lost == 1 and not bad.passed


def test_a_lower_seq_after_a_higher_one_is_reordered() -> None:
    sends, logs, rows = clean_run()
    logs[1] = member("bob", [(1, "alice #1", "alice"), (3, "alice #3", "alice"),
                             (2, "alice #2", "alice")])  # fmt: skip
    v = verify(sends, logs, rows)
    assert (v.reordered, v.lost, v.duplicated) == (1, 0, 0) and not v.passed
    assert v.issues[0].kind == "reordered" and "after seq 3" in v.issues[0].detail


def test_recovery_per_fault() -> None:
    fault = FaultRecord("redis", "redis :1", 10.0, 100.0, "12:00:00.000", 103.0)
    later = FaultRecord("nginx", "nginx :2", 30.0, 120.0, "12:00:20.000", 120.1)
    sends = [
        SendRecord("a", ROOM, "c1", "t1", 99.0, "acked", 1, "", 100.5),  # sent before: ignored
        SendRecord("a", ROOM, "c2", "t2", 101.0, "refused", None, "unavailable", 101.1),
        SendRecord("a", ROOM, "c3", "t3", 101.5),  # unanswered
        SendRecord("a", ROOM, "c4", "t4", 104.0, "acked", 2, "", 104.2),
        SendRecord("a", ROOM, "c5", "t5", 121.0, "acked", 3, "", 121.1),
    ]
    drops = [Disconnect("b", 100.1, "gateway-0", 102.0), Disconnect("c", 100.2, "gateway-0")]
    first, second = recoveries([fault, later], sends, drops)
    assert first.first_ack_s == pytest.approx(4.2) and first.down_s == pytest.approx(3.0)
    assert (first.refused, first.unanswered, first.dropped, first.back_s) == (1, 1, 2, None)
    assert second.first_ack_s == pytest.approx(1.1) and second.dropped == 0


def test_the_schedule_is_reproducible_and_covers_every_kind() -> None:
    s = ChaosSettings(seconds=300, faults=[])
    a, b = plan(s, 7), plan(s, 7)
    assert a == b and a != plan(s, 8)
    assert {p.kind for p in a} == {"redis", "persister", "gateway", "mariadb", "nginx"}
    assert all(s.quiet_start_s <= p.at < s.seconds - s.quiet_end_s for p in a)
    assert all(0.5 <= p.down_s <= s.down_s for p in a)
    fixed = ChaosSettings(seconds=20, schedule="9:persister,3:redis")  # type: ignore[arg-type]
    assert [(p.at, p.kind) for p in plan(fixed, 1)] == [(3.0, "redis"), (9.0, "persister")]


def test_settings_refuse_a_kind_that_does_not_fit_the_redis_mode() -> None:
    with pytest.raises(ValueError, match="primary"):
        ChaosSettings(redis="single", faults="primary")  # type: ignore[arg-type]
    assert "primary" in ChaosSettings(redis="cluster").faults
