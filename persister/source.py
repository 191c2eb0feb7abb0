"""Where the persister reads from: the memory stream (embedded) or Redis persist streams."""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    """Entries stay pending until acknowledged; unacknowledged ones are offered again."""

    async def read(self, count: int, timeout: float) -> list[tuple[Any, dict[str, Any]]]: ...

    async def ack(self, ids: list[Any]) -> None: ...

    async def backlog(self) -> int: ...
