"""The adaptive flush window (gateway/hub.py): short when flushes are cheap, growing with their
cost under load when frames merge events, never outside its bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.auth import Identity
from gateway.connection import Connection
from gateway.hub import FLUSH_SHARE, Hub, adapt_window
from shared import events
from shared.config import Settings
from shared.metrics import GatewayMetrics

LOW, HIGH = 0.002, 0.100
SEND_S = 0.0005  # what one frame's write costs on the hub's clock


@pytest.mark.parametrize(
    ("flush_s", "expected"),
    [
        (0.0, 0.010),  # nothing written: the minimum
        (0.001, 0.010),  # a cheap flush: still the minimum
        (0.005, 0.005 * FLUSH_SHARE),  # a costly one: proportional
        (0.010, 0.040),
        (1.0, 0.050),  # a very slow one: capped
    ],
)
def test_window_follows_the_cost_of_a_flush_that_merged(flush_s: float, expected: float) -> None:
    assert adapt_window(flush_s, 100, 300, 0.010, 0.050) == pytest.approx(expected)


@pytest.mark.parametrize(("frames", "written"), [(100, 100), (100, 109), (1, 1)])
def test_frames_of_about_one_event_keep_the_minimum(frames: int, written: int) -> None:
    # However long the flush took: a longer window would write the same frames, only later.
    assert adapt_window(1.0, frames, written, 0.010, 0.050) == 0.010


def test_minimum_wins_when_bounds_cross() -> None:
    # CHAT_COALESCE_MS above CHAT_COALESCE_MAX_MS: the window never drops below the minimum.
    assert adapt_window(0.0, 10, 30, 0.5, 0.05) == 0.5
    assert adapt_window(1.0, 10, 30, 0.5, 0.05) == 0.5


class Clock:
    """The hub's flush timer, advanced by the writes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Socket:
    """An ASGI WebSocket whose every frame costs ``SEND_S`` on the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.frames: list[str] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.clock.now += SEND_S
        self.frames.append(message["text"])


def window_after_one_flush(rooms: dict[str, int], messages_per_room: int) -> tuple[float, int]:
    """Members in rooms (room → member count), each room publishing ``messages_per_room``
    messages in one window: the window after the flush, and how many frames it wrote."""

    async def main() -> tuple[float, int]:
        clock = Clock()
        hub = Hub(LOW, GatewayMetrics(CollectorRegistry()), HIGH, clock=clock)
        sockets = []
        for room, members in rooms.items():
            for i in range(members):
                socket = Socket(clock)
                conn = Connection(
                    socket,  # type: ignore[arg-type]
                    Identity(f"{room}-{i}", "anonymous"),
                    Settings(),
                    hub._metrics,
                    hub,
                    lambda _: None,
                )
                conn.rooms[room] = 0
                hub.add(room, conn)
                sockets.append(socket)
        for room in rooms:
            for seq in range(1, messages_per_room + 1):
                hub.deliver(room, seq, 0, events.encode(events.message(room, seq, "u", "hi", 1)))
        await asyncio.sleep(0)  # one loop iteration: the flush scheduled by the first event
        return hub.window_s, sum(len(s.frames) for s in sockets)

    return asyncio.run(main())


def test_many_small_rooms_keep_the_minimum_window_however_long_the_flush() -> None:
    # 40 rooms of 5, one message each: 200 frames of one event, a 100 ms flush. A longer window
    # would merge nothing and delay every message by up to its length.
    window, frames = window_after_one_flush({f"r{i}": 5 for i in range(40)}, 1)
    assert frames == 200
    assert window == LOW


def test_a_busy_room_grows_the_window_with_the_cost_of_the_flush() -> None:
    # One room of 40, 3 messages in the window: 40 frames of 3 events, a 20 ms flush.
    window, frames = window_after_one_flush({"lobby": 40}, 3)
    assert frames == 40
    assert window == pytest.approx(FLUSH_SHARE * 40 * SEND_S)
