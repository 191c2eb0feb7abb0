"""Outbound queues: slow consumers are cut off (4008) without holding others; frames coalesce."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from statistics import median

import orjson
import pytest

from tests.conftest import Client, join

pytestmark = pytest.mark.anyio

# How much the other members' median delay may rise while a member stops reading.
LATENCY_MARGIN_MS = 20


async def test_client_that_stops_reading_is_closed_4008_others_keep_receiving(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    server = start_server(
        chat_max_backlog_events=100,
        chat_rate_per_s=100000,
        chat_rate_burst=100000,
        chat_user_rate_per_s=100000,
        chat_user_rate_burst=100000,
    )
    watcher = await join(server, "watcher", "busy")
    sender = await join(server, "sender", "busy")
    # A tiny receive buffer makes the slow client's TCP window fill quickly.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = await Client.connect(f"{server.ws_url}?user=slow&room=busy", sock=sock, max_queue=1)
    await slow.expect("joined", room="busy")
    await watcher.expect("presence", room="busy", joined=["slow"])

    text = "x" * 3900
    seqs: list[int] = []
    evicted = False
    while not evicted:
        assert len(seqs) < 20000, "the slow client was never cut off"
        # Small rounds keep the sender's and the watcher's own backlogs far below the limit.
        for _ in range(20):
            await sender.send(type="send", room="busy", text=text)
        await sender.messages("busy", 20)
        got = 0
        while got < 20:
            event = await watcher.next()
            if event["type"] == "message":
                seqs.append(event["seq"])
                got += 1
            elif event["type"] == "presence" and event["left"] == ["slow"]:
                evicted = True
    print(f"slow client cut off after {len(seqs)} messages")
    # The watcher got every message, in order, while the slow client was being cut off.
    assert seqs == list(range(1, len(seqs) + 1))
    # Once the slow client reads again, it drains what was already in flight, then sees 4008.
    assert await slow.closed(timeout=60) == 4008


class Tap:
    """Reads a client's frames the moment they arrive and stamps each message with its delay.

    The delay is the receipt time minus the message's server ``ts`` (both wall clock on this
    machine, in ms). Reading in a task of its own keeps the test's other awaits out of it.
    """

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self.seqs: list[int] = []  # message seqs in the order received
        self.delays: dict[int, float] = {}  # seq -> ms from publish to receipt
        self.left_after: dict[str, int] = {}  # user seen leaving -> highest seq received then
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self.client.ws.recv()
            received = time.time_ns() / 1e6
            frame = orjson.loads(raw)
            for event in frame if isinstance(frame, list) else [frame]:
                if event["type"] == "message":
                    self.seqs.append(event["seq"])
                    self.delays[event["seq"]] = received - event["ts"]
                elif event["type"] == "presence":
                    for user in event["left"]:
                        self.left_after[user] = max(self.delays, default=0)
            self._changed.set()

    async def until(self, done: Callable[[], bool], what: str, timeout: float = 15) -> None:
        """Wait until ``done()`` holds, re-checking after every frame."""
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {what} within {timeout}s") from None

    async def stop(self) -> None:
        """Stop reading (the client's socket is then left unread)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_client_that_stops_reading_does_not_delay_the_others(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    """The watcher's publish-to-receipt delay while a member's backlog fills up to 4008.

    Phase 1: the slow client reads; it has caught up after every round (the baseline).
    Phase 2: it stops reading. Its socket buffers fill first, then its outbox grows by every
    message until it overflows (the last ``backlog`` messages before it leaves the room). If
    the gateway waited on that socket, the watcher's delay would grow in phase 2, most of all
    in that last stretch; it must stay at the baseline.
    """
    backlog = 100
    server = start_server(
        chat_max_backlog_events=backlog,
        chat_rate_per_s=100000,
        chat_rate_burst=100000,
        chat_user_rate_per_s=100000,
        chat_user_rate_burst=100000,
    )
    watcher = await join(server, "watcher", "busy")
    sender = await join(server, "sender", "busy")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = await Client.connect(f"{server.ws_url}?user=slow&room=busy", sock=sock, max_queue=1)
    await slow.expect("joined", room="busy")
    await watcher.expect("presence", room="busy", joined=["slow"])

    taps = [Tap(watcher, "watcher"), Tap(sender, "sender"), Tap(slow, "slow")]
    watching, echoes, slow_tap = taps
    text = "x" * 3900
    sent = 0

    async def send_round(*readers: Tap) -> None:
        # Small rounds keep the sender's and the watcher's own backlogs far below the limit.
        nonlocal sent
        for _ in range(20):
            await sender.send(type="send", room="busy", text=text)
        sent += 20
        last = sent
        for reader in (echoes, *readers):
            # A gateway that waits on the stalled socket stalls everyone: this times out.
            await reader.until(lambda r=reader: last in r.delays, f"message {last}")

    try:
        for _ in range(6):
            await send_round(watching, slow_tap)
        baseline_seqs = range(21, sent + 1)  # the first round warms up
        await slow_tap.stop()
        stalled_from = sent + 1
        while "slow" not in watching.left_after:
            assert sent < 20000, "the slow client was never cut off"
            await send_round(watching)
    finally:
        for tap in taps:
            await tap.stop()

    cut = watching.left_after["slow"]
    # The watcher got every message, in order, while the slow client was being cut off.
    assert watching.seqs == list(range(1, sent + 1))
    baseline = median(watching.delays[s] for s in baseline_seqs)
    filling = median(watching.delays[s] for s in range(stalled_from, cut - backlog + 1))
    overflowing = median(watching.delays[s] for s in range(cut - backlog + 1, cut + 1))
    print(
        f"watcher delay, median ms: slow reading {baseline:.1f}, its socket filling "
        f"{filling:.1f}, its outbox filling {overflowing:.1f} "
        f"(cut off after {cut - stalled_from + 1} unread messages)"
    )
    # Generous: the medians sit near the 10 ms coalescing window and a loaded machine moves
    # them by a few ms. A fan-out that waits on the stalled socket never delivers (the waits
    # above time out); one that waits for it a bounded time per flush adds that time here.
    assert filling <= baseline + LATENCY_MARGIN_MS
    assert overflowing <= baseline + LATENCY_MARGIN_MS
    assert await slow.closed(timeout=60) == 4008


async def test_events_pending_together_leave_in_one_array_frame(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    # A long coalescing window makes the batching observable without depending on timing.
    server = start_server(chat_coalesce_ms=500)
    alice = await join(server, "alice", "burst")
    bob = await join(server, "bob", "burst")
    for n in range(10):
        await alice.send(type="send", room="burst", text=str(n))
    messages = await bob.messages("burst", 10)
    assert [m["text"] for m in messages] == [str(n) for n in range(10)]
    arrays = [f for f in bob.frames if isinstance(f, list)]
    assert arrays and max(len(f) for f in arrays) > 1
