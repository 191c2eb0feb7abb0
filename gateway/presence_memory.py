"""In-process presence: the memory broker's twin, for one process's rooms."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from gateway.broker_memory import MemoryBroker
from gateway.presence import ROOMS_LISTED, RoomInfo
from gateway.supervisor import Supervised
from shared import events
from shared.stream_memory import MemoryStream


class MemoryPresence:
    """Connections per (room, user), told to the room through the memory broker."""

    def __init__(self, broker: MemoryBroker, stream: MemoryStream | None = None) -> None:
        self._broker = broker
        self._stream = stream
        self._online: dict[str, Counter[str]] = {}  # room → user → local connections

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def tasks(self) -> list[Supervised]:
        return []

    async def join(self, room: str, user: str) -> None:
        users = self._online.setdefault(room, Counter())
        users[user] += 1
        if users[user] == 1:
            self._changed("join", room, user)

    async def leave(self, room: str, user: str) -> None:
        users = self._online.get(room)
        if users is None or users[user] <= 0:
            return
        users[user] -= 1
        if users[user] == 0:
            del users[user]
            if not users:
                del self._online[room]  # an empty room keeps nothing here
            self._changed("leave", room, user)

    def _changed(self, kind: Literal["join", "leave"], room: str, user: str) -> None:
        if self._stream is not None:
            self._stream.append({"type": kind, "room": room, "user": user, "ts": events.now_ms()})
        joined, left = ([user], []) if kind == "join" else ([], [user])
        self._broker.fan_out(room, 0, events.presence(room, joined, left))

    async def members(self, room: str) -> list[str]:
        return sorted(self._online.get(room, ()))

    async def rooms(self) -> list[RoomInfo]:
        heads = self._broker.heads()
        names = sorted(set(heads) | set(self._online))[:ROOMS_LISTED]
        return [
            {"room": r, "online": len(self._online.get(r, ())), "last_seq": heads.get(r, 0)}
            for r in names
        ]
