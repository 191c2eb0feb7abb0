"""Where the persister reads from: the memory stream (embedded) or Redis persist streams."""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    """Entries stay pending until acknowledged; unacknowledged ones are offered again.

    Lifecycle: :meth:`start` before the first read; :meth:`close` stops taking new entries
    (and ends any background task). After close, :meth:`read` with ``timeout=0`` returns what
    the source already holds (so it can be written and acknowledged), then nothing.
    """

    async def start(self) -> None: ...

    async def read(self, count: int, timeout: float) -> list[tuple[Any, dict[str, Any]]]: ...

    async def ack(self, ids: list[Any]) -> None: ...

    async def backlog(self) -> int: ...

    async def close(self) -> None: ...
