"""One load-generator process: its own event loop, a share of the virtual users, and the send
schedule; it reports counters to the runner through a queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from loadtests.client import VirtualUser, user_class
from loadtests.socketio import SocketIOPayloads, SocketIOVerifier
from loadtests.verify import Tally, UserVerifier

TICK_S = 0.005  # the sender wakes this often and sends what is due
SNAPSHOT_S = 1.0


@dataclass(frozen=True)
class Phase:
    """A stretch of the run at one total send rate (msgs/s over all senders)."""

    name: str
    seconds: float
    rate: float = 0.0
    measured: bool = True


@dataclass(frozen=True)
class UserSpec:
    name: str
    url: str  # the /ws endpoint, without query
    rooms: tuple[str, ...]
    sends: bool = True
    join_later: tuple[str, ...] = ()  # of ``rooms``: joined with ``join`` commands, not ``?room=``

    @property
    def full_url(self) -> str:
        on_connect = (r for r in self.rooms if r not in self.join_later)
        query = "&".join([f"user={quote(self.name)}", *(f"room={quote(r)}" for r in on_connect)])
        return f"{self.url}?{query}"


@dataclass
class WorkerSpec:
    index: int
    users: list[UserSpec]
    phases: list[Phase]
    total_senders: int
    text_bytes: int = 32
    sample_every: int = 1
    track_senders: bool = False
    client: str = "picows"
    connect_concurrency: int = 64
    connect_timeout_s: float = 60.0
    drain_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


def raise_nofile() -> int:
    """Raise the open-files limit to its hard maximum; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_main(spec: WorkerSpec, queue: Any, start_at: Any, stop_at: Any) -> None:
    """Process entry point (``multiprocessing``)."""
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        asyncio.run(Worker(spec, queue, start_at, stop_at).run())
    except BaseException as exc:  # report, then die: the runner must not wait forever
        queue.put(("failed", spec.index, repr(exc)))
        raise


class Worker:
    def __init__(self, spec: WorkerSpec, queue: Any, start_at: Any, stop_at: Any) -> None:
        self.spec = spec
        self.queue = queue
        self.start_at = start_at
        self.stop_at = stop_at
        self.tally = Tally(spec.sample_every)
        self.users: list[VirtualUser] = []
        self.connect_failed = 0
        self.connect_errors: list[str] = []

    async def _connect_one(self, spec: UserSpec, gate: asyncio.Semaphore) -> None:
        cls = user_class(self.spec.client)
        kind = SocketIOVerifier if self.spec.client == "socketio" else UserVerifier
        verifier = kind(spec.name, self.tally, self.spec.track_senders)
        user = cls(spec.full_url, verifier, list(spec.rooms))
        async with gate:
            try:
                await asyncio.wait_for(user.connect(), self.spec.connect_timeout_s)
                for room in spec.join_later:  # queued behind the ?room= joins, in order
                    user.send(orjson.dumps({"type": "join", "room": room}))
                await asyncio.wait_for(user.ready.wait(), self.spec.connect_timeout_s)
                if user.closed.is_set():
                    raise ConnectionError(f"closed {user.close_code} before joining")
                if user.refused:
                    raise ConnectionError(f"join refused: {user.refused}")
            except (OSError, TimeoutError, Exception) as exc:
                self.connect_failed += 1
                if len(self.connect_errors) < 5:
                    self.connect_errors.append(f"{spec.name}: {exc!r}")
                await user.close()
                return
        self.users.append(user)

    async def run(self) -> None:
        spec = self.spec
        gate = asyncio.Semaphore(spec.connect_concurrency)
        tasks = [asyncio.ensure_future(self._connect_one(u, gate)) for u in spec.users]
        if tasks:  # one deadline for the whole connect phase; late users count as failed
            _, late = await asyncio.wait(tasks, timeout=spec.connect_timeout_s)
            for task in late:
                task.cancel()
            self.connect_failed += len(late)
            if late and len(self.connect_errors) < 5:
                self.connect_errors.append(f"{len(late)} not connected within the deadline")
        self.queue.put(("connected", spec.index, len(self.users), self.connect_failed))
        while self.start_at.value == 0:  # noqa: ASYNC110 - set by another process
            await asyncio.sleep(0.01)
        await self._schedule(self.start_at.value)
        await self._drain()
        self._snapshot(len(spec.phases))
        self.queue.put(("final", spec.index, self._final()))
        await asyncio.gather(*(u.close() for u in self.users))

    def _snapshot(self, phase: int) -> None:
        self.queue.put(("snap", self.spec.index, phase, self.tally.snapshot()))

    async def _schedule(self, t0: float) -> None:
        spec = self.spec
        names = {u.name for u in spec.users if u.sends}
        senders = [u for u in self.users if u.verifier.user in names]
        share = len(senders) / spec.total_senders if spec.total_senders else 0.0
        payloads = (SocketIOPayloads if spec.client == "socketio" else _Payloads)(spec.text_bytes)
        cursor = 0  # round robin over the senders
        counts = [0] * len(senders)
        # cids are unique per run: the server deduplicates a (user, room, cid) for minutes.
        run_id = f"{os.getpid():x}{int(time.time() * 1000) % 10**8:x}"
        phase_start = t0
        next_snap = t0 + SNAPSHOT_S  # aligned with the runner's once-a-second progress line
        for index, phase in enumerate(spec.phases):
            phase_end = phase_start + phase.seconds
            rate = phase.rate * share
            sent_in_phase = 0
            while True:
                now = time.monotonic()
                if now >= phase_end or now >= self.stop_at.value:
                    break
                if rate > 0 and senders and now >= phase_start:
                    due = int(rate * (now - phase_start)) - sent_in_phase
                    for _ in range(due):
                        i = cursor
                        cursor = (cursor + 1) % len(senders)
                        user = senders[i]
                        if user.closed.is_set():
                            continue
                        rooms = user.rooms
                        room = rooms[counts[i] % len(rooms)]
                        cid = f"{run_id}-{counts[i]}"
                        counts[i] += 1
                        user.verifier.sent(cid)
                        user.send(payloads.send(room, cid, user.verifier.user))
                    sent_in_phase += max(due, 0)
                if now >= next_snap:
                    self._snapshot(index)
                    while next_snap <= now:
                        next_snap += SNAPSHOT_S
                await asyncio.sleep(TICK_S)
            self._snapshot(index)
            if time.monotonic() >= self.stop_at.value:
                return
            phase_start = phase_end

    async def _drain(self) -> None:
        """Wait (bounded) until every send is echoed; then a short grace for the others' echoes."""
        deadline = time.monotonic() + self.spec.drain_s
        while time.monotonic() < deadline:
            if not any(u.verifier.pending for u in self.users if not u.closed.is_set()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _final(self) -> dict[str, Any]:
        users = []
        for u in self.users:
            v = u.verifier
            users.append(
                {
                    "user": v.user,
                    "gateway": v.gateway,
                    "open": not u.closed.is_set(),
                    "last": v.last_seqs(),
                    "missing": v.missing(),
                    "pending": len(v.pending),
                    "sent": v.sent_count,
                    "senders": dict(v.senders) if v.track_senders else None,
                }
            )
        return {
            "users": users,
            "connect_failed": self.connect_failed,
            "connect_errors": self.connect_errors,
        }


class _Payloads:
    """``send`` frames with a padded text of a fixed size."""

    def __init__(self, text_bytes: int) -> None:
        self.pad = "x" * max(0, text_bytes)

    def send(self, room: str, cid: str, user: str = "") -> bytes:
        """One ``send`` (``user``: the sender, implied by the connection here)."""
        # The send time leads the text: receivers measure latency from it (end to end).
        head = f"{time.time() * 1000:.1f} {cid}"
        text = (head + " " + self.pad)[: max(len(head), len(self.pad))]
        return orjson.dumps({"type": "send", "room": room, "text": text, "cid": cid})
