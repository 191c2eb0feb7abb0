"""Latency histogram and percentile maths (pure; mergeable across worker processes)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

LINEAR_LIMIT_MS = 100.0  # 0.1 ms buckets below this
LINEAR_BUCKETS = 1000
LOG_STEPS_PER_E = 100  # above it: buckets ~1 % wide


def bucket_of(ms: float) -> int:
    """The bucket index of a latency in milliseconds (negative values count as 0)."""
    if ms < LINEAR_LIMIT_MS:
        return int(ms * 10) if ms > 0 else 0
    return LINEAR_BUCKETS + int(math.log(ms / LINEAR_LIMIT_MS) * LOG_STEPS_PER_E)


def bucket_upper(index: int) -> float:
    """The upper bound (ms) of a bucket: percentiles are reported conservatively."""
    if index < LINEAR_BUCKETS:
        return (index + 1) / 10
    return LINEAR_LIMIT_MS * math.exp((index - LINEAR_BUCKETS + 1) / LOG_STEPS_PER_E)


class LatencyHistogram:
    """Counts per bucket plus the exact max and sum; ``merge`` adds another one."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        index = bucket_of(ms)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def merge(self, other: LatencyHistogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def take(self) -> LatencyHistogram:
        """Return the contents and reset (for per-interval deltas)."""
        out = LatencyHistogram()
        out.counts, out.count, out.total, out.max = self.counts, self.count, self.total, self.max
        self.counts, self.count, self.total, self.max = {}, 0, 0.0, 0.0
        return out

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile ``q`` (0-100), as its bucket's upper bound, at most the max."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_upper(index), self.max)
        return self.max

    def cdf(self) -> list[tuple[float, float]]:
        """(latency ms, fraction of samples at or below it) for every occupied bucket."""
        out: list[tuple[float, float]] = []
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            out.append((min(bucket_upper(index), self.max), seen / self.count))
        return out


def nearest_rank(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of raw values; 0 for no values."""
    ordered: Sequence[float] = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
