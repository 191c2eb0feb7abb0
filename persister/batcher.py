"""When to flush: at ``size`` entries or ``interval_s`` after the first one was produced,
whichever first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items and says when they are due. Pure: no I/O, injectable clock."""

    def __init__(
        self, size: int, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.interval_s = interval_s
        self._clock = clock
        self._items: list[T] = []
        self._opened = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T], waited_s: float = 0.0) -> None:
        """Append items; the first item of a batch starts its clock, set back by ``waited_s``:
        how long that item had waited before it got here (clamped to the interval)."""
        for item in items:
            if not self._items:
                self._opened = self._clock() - min(max(waited_s, 0.0), self.interval_s)
            self._items.append(item)

    def room(self) -> int:
        """How many items fit before the batch is full."""
        return max(0, self.size - len(self._items))

    def due(self) -> bool:
        """True when the batch is full or its time is up."""
        return bool(self._items) and (
            len(self._items) >= self.size or self._clock() - self._opened >= self.interval_s
        )

    def time_left(self) -> float:
        """Seconds until the batch is due by time (the whole interval when empty)."""
        if not self._items:
            return self.interval_s
        return max(0.0, self.interval_s - (self._clock() - self._opened))

    def age(self) -> float:
        """Seconds since the first item of the batch arrived (0 when empty)."""
        return self._clock() - self._opened if self._items else 0.0

    def waiting(self) -> Sequence[T]:
        """The items waiting, in the order they came (a view: do not keep it)."""
        return self._items

    def take(self) -> list[T]:
        """Everything collected (at most ``size``), emptying the batcher of it."""
        batch, self._items = self._items[: self.size], self._items[self.size :]
        if self._items:
            self._opened = self._clock()
        return batch
