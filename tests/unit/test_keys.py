"""Redis key encoding (issue 13, item 10): distinct (room, user, cid) never share a key, and no
key of one kind reads as another kind."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from shared import events, keys

SHARDS = [1, 2, 48]

rooms = st.from_regex(events.ROOM_RE, fullmatch=True).filter(events.valid_room)
# Users and cids as the protocol admits them, with the separators of old and new encodings
# (``#``, ``:``, digits) made likely.
tricky = st.sampled_from(["#", ":", "1", "0", "12:", ":seq:", ":presence:", "#x", "}", "{"])
texts = st.lists(tricky | st.text(max_size=3), max_size=6).map("".join)
users = (texts | st.text(min_size=1, max_size=32)).filter(events.valid_user)
cids = texts.filter(lambda c: len(c) <= events.MAX_CID_CHARS)  # "" is the gateway's "no cid"
shards = st.sampled_from(SHARDS)

# Every builder of a room's keys, as (kind, key of (room, user, cid, shards)).
BUILDERS: list[tuple[str, Callable[[str, str, str, int], str]]] = [
    ("seq", lambda r, u, c, n: keys.seq(r, n)),
    ("verified", lambda r, u, c, n: keys.verified(r, n)),
    ("log", lambda r, u, c, n: keys.log(r, n)),
    ("room", lambda r, u, c, n: keys.channel(r, n)),
    ("presence", lambda r, u, c, n: keys.presence(r, n)),
    ("persist", lambda r, u, c, n: keys.room_persist(r, n)),
    ("cid", keys.cid),
    ("presence_user", lambda r, u, c, n: keys.presence_user(r, u, n)),
    ("lock", lambda r, u, c, n: keys.lock(r, n)),
]
# What each kind's key is made of: two keys of one kind are equal only if these are.
PARTS: dict[str, Callable[[str, str, str], tuple[str, ...]]] = {
    "seq": lambda r, u, c: (r,),
    "verified": lambda r, u, c: (r,),
    "log": lambda r, u, c: (r,),
    "room": lambda r, u, c: (r,),
    "presence": lambda r, u, c: (r,),
    "persist": lambda r, u, c: (),  # one stream per shard
    "cid": lambda r, u, c: (r, u, c),
    "presence_user": lambda r, u, c: (r, u),
    "lock": lambda r, u, c: (r,),
}


def test_the_reported_collision_is_gone() -> None:
    # Old encoding: both were `chat:{s..}:cid:room#ann#x#c1`.
    assert keys.cid("room", "ann", "x#c1", 48) != keys.cid("room", "ann#x", "c1", 48)
    assert keys.cid("room", "ann", "x#c1", 48).endswith(":cid:4:room3:ann4:x#c1")


@given(st.lists(tricky | st.text(max_size=5), max_size=5))
def test_fields_read_back_what_was_written(parts: list[str]) -> None:
    assert keys.fields("".join(keys.field(p) for p in parts)) == parts


@given(st.text(max_size=12))
def test_fields_refuse_what_is_not_a_run_of_fields(text: str) -> None:
    parts = keys.fields(text)
    if parts is not None:
        assert "".join(keys.field(p) for p in parts) == text  # the one way to read it


@given(rooms, users, cids, shards)
def test_a_cid_key_decodes_to_its_room_user_and_cid(room: str, user: str, cid: str, n: int) -> None:
    # A left inverse: the key determines (room, user, cid), so distinct tuples never collide.
    head, sep, rest = keys.cid(room, user, cid, n).partition(":cid:")
    assert sep and head == keys.seq(room, n).removesuffix(f":seq:{room}")
    assert keys.fields(rest) == [room, user, cid]


@given(rooms, users, cids, rooms, users, cids, shards)
def test_cid_keys_collide_only_for_equal_tuples(
    r1: str, u1: str, c1: str, r2: str, u2: str, c2: str, n: int
) -> None:
    same = keys.cid(r1, u1, c1, n) == keys.cid(r2, u2, c2, n)
    assert same == ((r1, u1, c1) == (r2, u2, c2))


def _small(alphabet: str, lengths: range) -> list[str]:
    return ["".join(t) for k in lengths for t in itertools.product(alphabet, repeat=k)]


def test_no_two_small_tuples_share_a_cid_key() -> None:
    # Exhaustive over alphabets holding every separator.
    small_rooms = [r for r in _small("a1:", range(1, 4)) if events.valid_room(r)]
    small_users = [u for u in _small("a#:1", range(1, 4)) if events.valid_user(u)]
    small_cids = _small("a#:1", range(4))
    tuples = list(itertools.product(small_rooms, small_users, small_cids))
    assert len({keys.cid(r, u, c, 48) for r, u, c in tuples}) == len(tuples)
    # The old encoding does collide here: the search space can see the bug.
    assert len({f"{r}#{u}#{c}" for r, u, c in tuples}) < len(tuples)


# Room names that spell other kinds, users and cids that spell separators and lengths.
SAMPLE_ROOMS = ["a", "1", "a:1", "seq", "presence", "a:seq:b", "a:presence:b", "cid:1:a", "x.y-z"]
SAMPLE_USERS = ["a", "a#b", "#", ":", "a:seq:b", "b:presence:c", "1:a", "}:seq:a", "a#1:b"]
SAMPLE_CIDS = ["", "a", "#a", "1:a", ":seq:a", "a#b"]


def _every_key() -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """Key → every (kind, parts) that builds it, over the samples and shard counts."""
    made: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for n, room, user, cid in itertools.product(SHARDS, SAMPLE_ROOMS, SAMPLE_USERS, SAMPLE_CIDS):
        for kind, build in BUILDERS:
            parts = PARTS[kind](room, user, cid)
            if kind == "persist":
                parts = (str(n), str(keys.shard_of(room, n)))
            made.setdefault(build(room, user, cid, n), set()).add((kind, parts))
    return made


def test_no_key_is_built_by_two_kinds_or_two_parts() -> None:
    made = _every_key()
    assert {k: v for k, v in made.items() if len(v) > 1} == {}


def test_kind_reads_every_key_as_its_builder() -> None:
    # keys.kind (the segment after the hash tag) must keep working with these encodings.
    for key, ((kind, _parts),) in _every_key().items():
        assert keys.kind(key) == kind, key


@given(rooms, users, cids, shards)
def test_every_kind_for_any_names(room: str, user: str, cid: str, n: int) -> None:
    built = {kind: build(room, user, cid, n) for kind, build in BUILDERS}
    assert len(set(built.values())) == len(built)
    for kind, key in built.items():
        assert keys.kind(key) == kind


@given(rooms, users, shards)
def test_presence_user_is_the_presence_key_hash_user(room: str, user: str, n: int) -> None:
    # The KEEP script builds this key in Lua as ARGV[6] .. user, ARGV[6] = presence(room) .. "#".
    assert keys.presence_user(room, user, n) == keys.presence(room, n) + "#" + user


@given(rooms)
def test_room_names_hold_no_key_separator_but_colon(room: str) -> None:
    assert not set(room) & set("#{}\n\r *?[]\\")


def test_room_name_validation() -> None:
    for good in ["a:seq:b", "a:presence:b", "seq", "1:2", "a" + ":" * 63]:
        assert events.valid_room(good)
    for bad in ["lobby\n", "a#b", "a{b}", "a\r", "a:seq:b\n", ":a"]:
        assert not events.valid_room(bad)
