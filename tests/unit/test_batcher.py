"""Flush at size or after the interval, whichever first."""

from __future__ import annotations

from persister.batcher import Batcher
from tests.conftest import FakeClock


def test_flush_by_size(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(3, 1.0, clock)
    batcher.add([1, 2])
    assert not batcher.due() and batcher.room() == 1
    batcher.add([3, 4])
    assert batcher.due()
    assert batcher.take() == [1, 2, 3]
    assert batcher.take() == [4]
    assert batcher.take() == []


def test_flush_by_time_counts_from_first_item(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(100, 1.0, clock)
    assert not batcher.due() and batcher.time_left() == 1.0
    clock.now = 5.0
    batcher.add([1])
    clock.now = 5.6
    batcher.add([2])
    assert not batcher.due() and abs(batcher.time_left() - 0.4) < 1e-9
    clock.now = 6.0
    assert batcher.due() and batcher.time_left() == 0
    assert list(batcher.waiting()) == [1, 2]
    assert batcher.take() == [1, 2] and not batcher.waiting()


def test_leftover_starts_a_new_window(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(2, 1.0, clock)
    batcher.add([1, 2, 3])
    clock.now = 0.5
    assert batcher.take() == [1, 2]
    clock.now = 1.2
    assert not batcher.due()  # the leftover's window opened at 0.5
    clock.now = 1.5
    assert batcher.due()


def test_age_counts_from_the_first_item_of_the_batch(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(2, 1.0, clock)
    assert batcher.age() == 0.0
    clock.now = 3.0
    batcher.add([1])
    clock.now = 3.25
    assert batcher.age() == 0.25
    batcher.add([2, 3])
    batcher.take()
    assert batcher.age() == 0.0  # the leftover's window opened now


def test_a_batch_is_due_an_interval_after_its_first_item_was_produced(clock: FakeClock) -> None:
    batcher: Batcher[int] = Batcher(100, 1.0, clock)
    clock.now = 5.0
    batcher.add([1], waited_s=0.75)  # read 0.75 s after it was published
    batcher.add([2], waited_s=0.9)  # a later item does not move the clock
    assert not batcher.due() and abs(batcher.time_left() - 0.25) < 1e-9
    clock.now = 5.25
    assert batcher.due()
    batcher.take()
    batcher.add([3], waited_s=60.0)  # redelivered long after: due now, not a minute ago
    assert batcher.due() and batcher.age() == 1.0
    batcher.take()
    batcher.add([4], waited_s=-3.0)  # a producer clock ahead of ours counts as no wait
    assert batcher.time_left() == 1.0
