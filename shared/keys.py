"""Every Redis key and channel name, in one place (ARCHITECTURE.md, "Redis keys").

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


def room_persist(room: str, shards: int) -> str:
    """The persist stream of the room's shard."""
    return persist(shard_of(room, shards), shards)


def cid(room: str, user: str, client_id: str, shards: int) -> str:
    """String key remembering a sent ``cid`` (the original event) for the idempotency window."""
    return f"{_tag(room, shards)}:cid:{room}#{user}#{client_id}"


def presence_user(room: str, user: str, shards: int) -> str:
    """Sorted set of the gateways (score: expiry ms) where ``user`` is in ``room``.

    ``#`` cannot occur in a room name, so no room's keys collide with another's.
    """
    return f"{presence(room, shards)}#{user}"


def room_in(key: str) -> str | None:
    """The room named by a ``seq`` or ``presence`` key (None for other keys), for SCAN."""
    for kind in (":seq:", ":presence:"):
        _, found, room = key.partition(kind)
        if found and "#" not in room:
            return room
    return None


# SCAN patterns that find every room: those with messages, and those with someone online.
ROOM_PATTERNS = (f"{PREFIX}:*:seq:*", f"{PREFIX}:*:presence:*")


def lock(room: str, shards: int) -> str:
    """The room's publish lock in synchronous persist mode."""
    return f"{_tag(room, shards)}:lock:{room}"
