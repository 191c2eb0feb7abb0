"""``shared.keys.kind``: every key a builder makes is classified by that builder, whatever the
room, the shard count or the shard's hash tag (``s<k>`` or ``s<k>.<n>``); other keys are other."""

from __future__ import annotations

import pytest

from shared import keys

ROOMS = ["general", "a", "team-42", "room:with:colons", "x}:y", "ünïcode", "persist", "seq"]
SHARDS = [1, 2, 3, 48, 1024, 4096]


def built(room: str, shards: int) -> dict[str, str]:
    """builder → the key it makes for ``room``."""
    return {
        "seq": keys.seq(room, shards),
        "log": keys.log(room, shards),
        "channel": keys.channel(room, shards),
        "presence": keys.presence(room, shards),
        "presence_user": keys.presence_user(room, "bob", shards),
        "persist": keys.persist(keys.shard_of(room, shards), shards),
        "room_persist": keys.room_persist(room, shards),
        "cid": keys.cid(room, "bob", "c-1", shards),
        "lock": keys.lock(room, shards),
    }


EXPECTED = {
    "seq": "seq",
    "log": "log",
    "channel": "room",
    "presence": "presence",
    "presence_user": "presence_user",
    "persist": "persist",
    "room_persist": "persist",
    "cid": "cid",
    "lock": "lock",
}


@pytest.mark.parametrize("shards", SHARDS)
@pytest.mark.parametrize("room", ROOMS)
def test_every_builder_is_recognised(room: str, shards: int) -> None:
    for builder, key in built(room, shards).items():
        assert keys.kind(key) == EXPECTED[builder], key


def test_dotted_hash_tags_are_recognised() -> None:
    # The regression: a classifier that wanted ``{s<digits>}`` saw every ``{s<k>.<n>}`` key as
    # "other". Most shards of 48 get a dotted tag.
    dotted = [k for k in (keys.seq(f"r{i}", 48) for i in range(50)) if "." in k.split("}")[0]]
    assert dotted
    assert {keys.kind(k) for k in dotted} == {"seq"}


def test_every_shard_persist_stream() -> None:
    for shards in (1, 3, 48):
        assert {keys.kind(keys.persist(s, shards)) for s in range(shards)} == {"persist"}


def test_many_users_and_cids() -> None:
    for user in ("bob", "a#b", "x:y", "ü"):
        assert keys.kind(keys.presence_user("general", user, 48)) == "presence_user"
        assert keys.kind(keys.cid("general", user, f"{user}#1:2", 48)) == "cid"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "foo",
        "chat",
        "chat:seq:general",  # no hash tag
        "chat:{s1}",  # nothing after the tag
        "chat:{s1}:",
        "chat:{}:seq:general",  # empty tag
        "chat:{s1:seq:general",  # unclosed tag
        "chat:{s1}:unknown:general",
        "chat:{s1}:persist:general",  # a persist stream has nothing after its segment
        "chat:{s1}:seq",  # a room key has its room after the segment
        "other:{s1}:seq:general",
        "CHAT:{s1}:seq:general",
        "session:abc",
    ],
)
def test_unrelated_keys_are_other(key: str) -> None:
    assert keys.kind(key) == "other"
