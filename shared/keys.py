"""Every Redis key and channel name, in one place (ARCHITECTURE.md, "Redis keys").

A room maps to one of N logical shards; each key of a room carries the shard as a hash tag so one
script touches one Redis Cluster slot.
"""

from __future__ import annotations

import zlib

PREFIX = "chat"
PERSIST_GROUP = "persister"


def shard_of(room: str, shards: int) -> int:
    """The room's logical shard: ``crc32(room) % shards``."""
    return zlib.crc32(room.encode()) % shards


def _tag(room: str, shards: int) -> str:
    return f"{PREFIX}:{{s{shard_of(room, shards)}}}"


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


def persist(shard: int) -> str:
    """The shard's persist stream, read by the persister consumer group."""
    return f"{PREFIX}:{{s{shard}}}:persist"


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
