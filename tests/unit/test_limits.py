"""The token bucket, driven by a fake clock."""

from __future__ import annotations

from gateway.limits import TokenBucket
from tests.conftest import FakeClock


def test_burst_then_refill(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 100  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_steady_rate_is_allowed(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=20, burst=1, clock=clock)
    for _ in range(100):
        clock.now += 0.05
        assert bucket.take()
