"""The store against a real database: idempotent batches, history pages, membership rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.store import Store, to_ms
from shared.tables import chat_participant, chat_room, message_conflict

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chat.db'}"
    else:
        url = request.getfixturevalue("mysql_url")
    store = Store(url)
    store.migrate()
    store.migrate()  # idempotent
    yield store
    store.close()


def msg(room: str, seq: int, text: str = "t", ts: int = 1_700_000_000_123) -> dict[str, object]:
    return {"type": "message", "room": room, "seq": seq, "user": "u", "text": text, "ts": ts}


def test_batches_are_idempotent(store: Store) -> None:
    store.write([msg("a", 1), msg("a", 2), msg("b", 1)])
    conflicts: list[object] = []
    # A redelivery overlapping the last batch: not a conflict.
    store.write([msg("a", 2), msg("a", 3)], on_conflict=conflicts.append)
    assert store.count_messages() == 4
    assert [m["text"] for m in store.after("a", 0, 10)] == ["t", "t", "t"]
    assert store.room_heads() == {"a": 3, "b": 1}
    assert conflicts == []


def test_a_seq_taken_by_another_message_is_kept_aside_and_reported(store: Store) -> None:
    store.write([msg("a", 1, "first"), msg("a", 2, "second")])
    conflicts: list[dict[str, object]] = []
    store.write([msg("a", 2, "other"), msg("a", 3, "third")], on_conflict=conflicts.append)
    assert [(c["room_id"], c["seq"], c["content"]) for c in conflicts] == [("a", 2, "other")]
    # The stored message stays; the newcomer is kept, not dropped.
    assert [m["text"] for m in store.after("a", 0, 10)] == ["first", "second", "third"]
    with store.engine.connect() as conn:
        kept = conn.execute(
            select(message_conflict.c.room_id, message_conflict.c.seq, message_conflict.c.content)
        ).all()
    assert [tuple(r) for r in kept] == [("a", 2, "other")]


def test_text_and_time_round_trip(store: Store) -> None:
    hostile = "'; DROP TABLE message; -- <script>alert(1)</script> \u0000? 😀 \u202e"
    store.write([msg("a", 1, hostile, ts=1_700_000_000_987)])
    [stored] = store.after("a", 0, 1)
    assert stored == {
        "type": "message",
        "room": "a",
        "seq": 1,
        "user": "u",
        "text": hostile,
        "ts": 1_700_000_000_987,
    }


def test_rooms_are_case_sensitive(store: Store) -> None:
    store.write([msg("Lobby", 1, "upper"), msg("lobby", 1, "lower")])
    assert store.after("Lobby", 0, 5)[0]["text"] == "upper"
    assert store.after("lobby", 0, 5)[0]["text"] == "lower"


def test_history_pages(store: Store) -> None:
    store.write([msg("h", n, f"m{n}") for n in range(1, 8)])
    page, more = store.history("h", None, 3)
    assert [m["seq"] for m in page] == [5, 6, 7] and more
    page, more = store.history("h", 5, 3)
    assert [m["seq"] for m in page] == [2, 3, 4] and more
    page, more = store.history("h", 2, 3)
    assert [m["seq"] for m in page] == [1] and not more
    assert store.history("none", None, 3) == ([], False)


def test_membership(store: Store) -> None:
    store.write([{"type": "join", "room": "m", "user": "alice", "ts": 1000}])
    store.write([{"type": "leave", "room": "m", "user": "alice", "ts": 2000}])
    store.write([{"type": "join", "room": "m", "user": "alice", "ts": 3000}])
    with store.engine.connect() as conn:
        row = conn.execute(select(chat_participant)).one()
        rooms = conn.execute(select(chat_room.c.room_id)).scalars().all()
    # The first join is kept; rejoining clears the exit.
    assert to_ms(row.joined_at) == 1000
    assert row.exited_at is None
    assert rooms == ["m"]


def member_row(store: Store, room: str, user: str) -> tuple[object, object]:
    query = select(chat_participant.c.joined_at, chat_participant.c.exited_at).where(
        chat_participant.c.room_id == room, chat_participant.c.user_id == user
    )
    with store.engine.connect() as conn:
        joined, exited = conn.execute(query).one()
    return (to_ms(joined), None if exited is None else to_ms(exited))


def change(kind: str, ts: int, user: str = "ann") -> dict[str, object]:
    return {"type": kind, "room": "r", "user": user, "ts": ts}


@pytest.mark.parametrize(
    ("applied", "expected"),
    [
        # (the order the entries reach the database) -> (joined_at, exited_at)
        (["join 1000", "leave 2000"], (1000, 2000)),
        (["leave 2000", "join 1000"], (1000, 2000)),  # a late join never reopens a left room
        (["join 1000", "join 3000", "leave 2000"], (1000, None)),  # a late leave: rejoined
        (["join 3000", "leave 2000", "join 1000"], (1000, None)),
        (["join 1000", "leave 2000", "join 3000", "leave 2000"], (1000, None)),  # a replay
        (["join 1000", "leave 1000"], (1000, 1000)),  # a tie: the leave wins
    ],
)
def test_membership_transitions_apply_only_when_newer(
    store: Store, applied: list[str], expected: tuple[object, object]
) -> None:
    for step in applied:
        kind, ts = step.split()
        store.write([change(kind, int(ts))])  # each in its own batch, as two replicas would
    assert member_row(store, "r", "ann") == expected
