"""Percentile maths of the load generator (histogram and raw values)."""

from __future__ import annotations

import random

import pytest

from loadtests.stats import LatencyHistogram, bucket_of, bucket_upper, nearest_rank


def test_nearest_rank() -> None:
    values = list(range(1, 101))
    assert nearest_rank(values, 50) == 50
    assert nearest_rank(values, 99) == 99
    assert nearest_rank(values, 100) == 100
    assert nearest_rank([7.0], 99) == 7.0
    assert nearest_rank([], 99) == 0.0


@pytest.mark.parametrize("ms", [0.0, 0.05, 1.0, 4.99, 99.9, 100.0, 150.0, 2000.0, 60_000.0])
def test_bucket_upper_bounds_its_values(ms: float) -> None:
    upper = bucket_upper(bucket_of(ms))
    assert ms <= upper
    assert upper - ms <= max(0.1, ms * 0.011) + 1e-9


def test_negative_latency_counts_as_zero() -> None:
    assert bucket_of(-3.0) == 0


def test_histogram_percentiles_close_to_exact() -> None:
    rng = random.Random(7)
    values = [rng.expovariate(1 / 20) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    for q in (50, 95, 99):
        exact = nearest_rank(values, q)
        assert exact <= h.percentile(q) <= exact * 1.011 + 0.1
    assert h.percentile(100) == max(values)
    assert h.count == len(values)
    assert h.mean == pytest.approx(sum(values) / len(values))


def test_merge_and_take() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in (1.0, 2.0, 3.0):
        a.add(v)
    b.add(500.0)
    a.merge(b)
    assert (a.count, a.max) == (4, 500.0)
    assert a.percentile(75) == pytest.approx(3.1)
    taken = a.take()
    assert taken.count == 4 and a.count == 0 and a.percentile(99) == 0.0


def test_cdf_is_monotonic_and_ends_at_one() -> None:
    h = LatencyHistogram()
    for v in (1, 1, 2, 10, 300):
        h.add(v)
    cdf = h.cdf()
    assert [y for _, y in cdf] == sorted(y for _, y in cdf)
    assert cdf[-1] == (300, 1.0)
