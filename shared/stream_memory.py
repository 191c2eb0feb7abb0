"""An in-process persist stream: the memory twin of the Redis persist streams.

The memory broker appends, the persister reads and acknowledges. Entries stay pending until
acknowledged, so a batch whose write failed is offered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Any


class MemoryStream:
    """Append-only queue with one consumer and explicit acknowledgement."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._new: deque[tuple[int, dict[str, Any]]] = deque()
        self._pending: dict[int, dict[str, Any]] = {}
        self._readable = asyncio.Event()

    def append(self, entry: dict[str, Any]) -> int:
        """Queue one entry; returns its id."""
        entry_id = next(self._ids)
        self._new.append((entry_id, entry))
        self._readable.set()
        return entry_id

    async def start(self) -> None:
        """Nothing to start: the broker appends in-process."""

    async def close(self) -> None:
        """Nothing to stop; everything appended stays readable (drained at shutdown)."""

    async def read(self, count: int, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``count`` new entries, waiting at most ``timeout`` seconds for the first."""
        if not self._new and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._readable.wait(), timeout)
        batch: list[tuple[int, dict[str, Any]]] = []
        while self._new and len(batch) < count:
            entry_id, entry = self._new.popleft()
            self._pending[entry_id] = entry
            batch.append((entry_id, entry))
        if not self._new:
            self._readable.clear()
        return batch

    async def ack(self, ids: list[int]) -> None:
        """Forget entries that are safely stored."""
        for entry_id in ids:
            self._pending.pop(entry_id, None)

    async def backlog(self) -> int:
        """Entries not yet acknowledged."""
        return len(self._new) + len(self._pending)
