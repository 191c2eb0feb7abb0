"""Every Redis key and channel name, in one place (docs/architecture.md).

A room maps to one of N logical shards; each key of a room carries the shard's hash tag, so one
script touches one Redis Cluster slot. Shard k's tag is chosen so that its slot lies in the middle
of the k-th of N equal slices of the slot space: a cluster whose P primaries own equal contiguous
slot ranges (what ``redis-cli --cluster create`` and an even reshard give) then holds exactly N/P
shards per primary when P divides N (docs/cluster.md, "Shards").
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

PREFIX = "chat"
PERSIST_GROUP = "persister"


def shard_of(room: str, shards: int) -> int:
    """The room's logical shard: ``crc32(room) % shards``."""
    return zlib.crc32(room.encode()) % shards


@functools.cache
def shard_tag(shard: int, shards: int) -> str:
    """The hash tag of ``shard`` (without braces): ``s<k>`` or ``s<k>.<n>``, the first whose
    slot lies in the middle half of the shard's slice of the slot space."""
    if not 0 <= shard < shards <= REDIS_CLUSTER_HASH_SLOTS // 4:
        raise ValueError(f"shard {shard} of {shards} is out of range")
    width = REDIS_CLUSTER_HASH_SLOTS / shards
    low, high = shard * width + width / 4, (shard + 1) * width - width / 4
    for n in range(1_000_000):
        tag = f"s{shard}" if n == 0 else f"s{shard}.{n}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    raise AssertionError("unreachable: CRC16 spreads tags over every slice")


def _tag(room: str, shards: int) -> str:
    return f"{PREFIX}:{{{shard_tag(shard_of(room, shards), shards)}}}"


def seq(room: str, shards: int) -> str:
    """String key holding the room's last seq."""
    return f"{_tag(room, shards)}:seq:{room}"


def verified(room: str, shards: int) -> str:
    """String key: the run id of the Redis process that last verified the room's seq (a Redis
    that restarted may have come back with an older seq: ``gateway/seqs.py``)."""
    return f"{_tag(room, shards)}:verified:{room}"


def log(room: str, shards: int) -> str:
    """Stream key of the room's capped recent log."""
    return f"{_tag(room, shards)}:log:{room}"


def channel(room: str, shards: int) -> str:
    """Pub/sub channel of the room."""
    return f"{_tag(room, shards)}:room:{room}"


def presence(room: str, shards: int) -> str:
    """Hash of user → expiry for the room."""
    return f"{_tag(room, shards)}:presence:{room}"


def persist(shard: int, shards: int) -> str:
    """The shard's persist stream, read by the persister consumer group."""
    return f"{PREFIX}:{{{shard_tag(shard, shards)}}}:persist"


def rooms(shard: int, shards: int) -> str:
    """The shard's rooms index: a sorted set of room → last activity (ms), kept by the publish
    and presence scripts (``shared/scripts.py``); ``/api/rooms`` reads it, never the keyspace."""
    return f"{PREFIX}:{{{shard_tag(shard, shards)}}}:rooms"


def room_rooms(room: str, shards: int) -> str:
    """The rooms index of the room's shard."""
    return rooms(shard_of(room, shards), shards)


def room_persist(room: str, shards: int) -> str:
    """The persist stream of the room's shard."""
    return persist(shard_of(room, shards), shards)


def field(text: str) -> str:
    """``<n>:<text>``, n the UTF-8 byte length of ``text`` in decimal: a self-delimiting field,
    so fields written one after another are read back one way only, whatever they contain."""
    return f"{len(text.encode('utf-8', 'surrogatepass'))}:{text}"


def fields(encoded: str) -> list[str] | None:
    """The texts of ``encoded``, which is zero or more :func:`field` results one after another
    (None if it is not: a bad length, or fewer bytes than a length says)."""
    data, texts = encoded.encode("utf-8", "surrogatepass"), []
    while data:
        size, colon, data = data.partition(b":")
        if not colon or not size.isdigit() or size != b"%d" % int(size) or len(data) < int(size):
            return None
        try:
            texts.append(data[: int(size)].decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:  # the length cuts a character in two
            return None
        data = data[int(size) :]
    return texts


def cid(room: str, user: str, client_id: str, shards: int) -> str:
    """String key remembering a sent ``cid`` (the original event) for the idempotency window:
    ``<tag>:cid:<field(room)><field(user)><field(client_id)>``.

    User names and cids may hold any character (``#``, ``:``, digits...), so each part is
    length-prefixed (:func:`field`): distinct (room, user, cid) never share a key (issue 13).
    """
    return f"{_tag(room, shards)}:cid:{field(room)}{field(user)}{field(client_id)}"


def presence_user(room: str, user: str, shards: int) -> str:
    """Sorted set of the gateways (score: expiry ms) where ``user`` is in ``room``:
    ``presence(room) + "#" + user``.

    Unambiguous without a length prefix: a room name cannot contain ``#`` (events.ROOM_RE), so
    the first ``#`` after the kind segment ends the room and the user is all the rest. The
    shape is relied on by the KEEP script (it builds this key as ``presence(room) .. "#" ..
    user`` in Lua, from a prefix the gateway passes) and by :func:`kind`: keep it.
    """
    return f"{presence(room, shards)}#{user}"


def lock(room: str, shards: int) -> str:
    """The room's publish lock in synchronous persist mode."""
    return f"{_tag(room, shards)}:lock:{room}"


def _shape(key: str) -> tuple[str, str | None] | None:
    """(the segment after the hash tag, what follows it or None) of ``chat:{tag}:...``."""
    head, brace, rest = key.partition(":{")
    tag, closed, rest = rest.partition("}:")
    if head != PREFIX or not brace or not tag or not closed:
        return None
    segment, colon, tail = rest.partition(":")
    return segment, tail if colon else None


@functools.cache
def _kinds() -> dict[tuple[str, bool], str]:
    """(segment, goes on after it) → kind, read off keys the builders make for a sample room."""
    room = "r"
    made = {
        "seq": seq(room, 1),
        "verified": verified(room, 1),
        "log": log(room, 1),
        "room": channel(room, 1),
        "presence": presence(room, 1),
        "persist": persist(0, 1),
        "rooms": rooms(0, 1),
        "cid": cid(room, "u", "c", 1),
        "lock": lock(room, 1),
    }
    table = {}
    for name, key in made.items():
        shape = _shape(key)
        assert shape is not None
        table[shape[0], shape[1] is not None] = name
    return table


def kind(key: str) -> str:
    """Which builder of this module made ``key``: ``"seq"``, ``"verified"``, ``"log"``,
    ``"room"`` (a channel), ``"presence"``, ``"presence_user"``, ``"persist"``, ``"rooms"``,
    ``"cid"`` or ``"lock"``; ``"other"`` for a key none of them makes (reports count Redis keys
    by it).

    Only the segment right after the hash tag is read: what follows it is each builder's own
    encoding. The segments are taken from keys the builders make, so the builders stay the one
    source of truth.
    """
    shape = _shape(key)
    if shape is None:
        return "other"
    segment, tail = shape
    found = _kinds().get((segment, tail is not None), "other")
    # A presence_user key is its room's presence key with "#<user>" appended, and "#" cannot
    # occur in a room name (presence_user).
    if found == "presence" and tail is not None and "#" in tail:
        return "presence_user"
    return found
