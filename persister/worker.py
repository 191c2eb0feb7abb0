"""The persister loop: read, batch, write in one transaction, then acknowledge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from persister.batcher import Batcher
from persister.source import Source
from shared import events
from shared.metrics import PersisterMetrics
from shared.store import Store

log = logging.getLogger(__name__)

Entry = tuple[Any, dict[str, Any]]


class Worker:
    """Moves entries from a :class:`Source` into the :class:`Store`, losing none.

    Acknowledges only after the transaction commits; while the database is down it retries
    with capped backoff and acknowledges nothing. One batch is written (in a thread) while the
    next is read: the read waits for the database no more, and the write for Redis no more.
    At most one batch is being written and one is being filled.
    """

    def __init__(
        self,
        source: Source,
        store: Store,
        metrics: PersisterMetrics,
        *,
        batch_size: int,
        flush_interval_s: float,
        poll_s: float = 1.0,
        gather_s: float = 0.05,
        backlog_every_s: float = 5.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.source = source
        self.store = store
        self.metrics = metrics
        self.batcher: Batcher[Entry] = Batcher(batch_size, flush_interval_s)
        self._poll_s = poll_s
        self._gather_s = gather_s
        self._backlog_every_s = backlog_every_s
        self._max_backoff_s = max_backoff_s
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True  # False while writes are failing
        self.source_ok = True  # False while the source cannot be read
        self._observed = 0.0
        self._writing: asyncio.Task[None] | None = None  # the batch being written, if any
        self._written_oldest_ts: int | None = None  # ts of its oldest entry (the lag gauge)

    async def start(self) -> None:
        """Start the source, then the loop (the schema is the migrations' job: ``make migrate``,
        or the persister's start unless ``CHAT_MIGRATE=0``)."""
        await self.source.start()
        self._task = asyncio.create_task(self.run(), name="persister")

    async def stop(self) -> None:
        """Write everything already read or queued, then stop."""
        self._stopping = True
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        """Until stopped: read, flush when due. On stop: close the source, write what it still
        holds (an in-process stream, entries read ahead), flush, return."""
        backoff = 0.05
        waited = 0.0  # how long the oldest entry of the last read had waited (seconds)
        while not self._stopping:
            if self.batcher.room() == 0:
                # A read returns up to ``wanted`` entries per stream: more than a batch can be
                # waiting here. Write it before reading again (a read may block ``poll_s``).
                await self._start_flush()
                continue
            timeout = min(self.batcher.time_left(), self._poll_s)
            wanted = self.batcher.room()
            try:
                read = await self.source.read(wanted, timeout)
                # The batch is due an interval after its first entry was published, not read.
                waited = _waited(read) if read else waited
                self.batcher.add(read, waited_s=waited)
                backoff = 0.05
            except Exception as exc:
                # The source (Redis) is unreachable: what was read stays pending there.
                self.source_ok = False
                log.warning("cannot read the persist stream (%r); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self.source_ok = True
            await self._observe()
            if self.batcher.due():
                # Due by time, with entries published about an interval ago: a trickle. (Older
                # ones, claimed from a dead replica or a backlog's tail, are written and the
                # loop reads on.)
                trickle = self.batcher.room() > 0 and waited < 2 * self.batcher.interval_s
                await self._start_flush()
                if trickle:
                    # What comes next is due an interval after it is published, so let it
                    # gather in Redis until then (and ``gather_s`` more, so that the read finds
                    # it due): one read per batch, not one for the few entries that came
                    # during this flush and one for the rest.
                    await asyncio.sleep(min(self.batcher.interval_s, self._poll_s) + self._gather_s)
            elif read and len(read) < wanted:
                # Everything there was read: a trickle would otherwise cost one read (a command
                # naming every stream) per entry. Let entries gather; the batch waits anyway.
                await asyncio.sleep(self._gather_time())
        try:
            # What is not read yet stays in Redis; what the source holds would be left pending.
            await self.source.close()
            while batch := await self.source.read(self.batcher.size, 0):
                self.batcher.add(batch)
                if self.batcher.room() == 0:
                    await self.flush()
        except Exception as exc:
            log.warning("cannot drain the source at shutdown: %r", exc)
        while len(self.batcher):
            await self.flush()
        await self._written()

    def _gather_time(self) -> float:
        """How long to let entries gather in Redis before the next read: the time the batch's
        rate so far needs to fill it, at least ``gather_s``, at most until it is due by time
        or ``poll_s`` (the loop still looks around: the lag, stale entries to claim).

        At a trickle that is one read per batch instead of one per ``gather_s``; a fast stream
        is read about as often as it fills a batch. Waiting costs nothing in latency (the batch
        is written when due either way) nor in safety (the entries wait in Redis).
        """
        rate = len(self.batcher) / max(self.batcher.age(), self._gather_s)
        fill = self.batcher.room() / rate if rate else self.batcher.time_left()
        return min(self.batcher.time_left(), self._poll_s, max(self._gather_s, fill))

    def _conflict(self, row: Mapping[str, Any]) -> None:
        # Never a silent no-op: the newcomer is kept in message_conflict, counted and logged.
        self.metrics.conflicts.inc()
        log.error(
            "seq %s of room %r already holds another message; the one from %r is kept in "
            "message_conflict",
            row["seq"],
            row["room_id"],
            row["sender_id"],
        )

    async def flush(self) -> None:
        """Write one batch (retrying until it commits), then acknowledge it; returns when done
        (after the batch being written, if any)."""
        await self._start_flush()
        await self._written()

    async def _start_flush(self) -> None:
        """Once the batch being written is done, start writing the next one, and return."""
        await self._written()
        batch = self.batcher.take()
        if batch:
            self._written_oldest_ts = _oldest_ts(batch)
            self._writing = asyncio.create_task(self._write(batch), name="persister-write")

    async def _written(self) -> None:
        """Wait for the batch being written, if any (its exception, if any, is raised)."""
        if self._writing is not None:
            try:
                await self._writing
            finally:
                self._writing = None
                self._written_oldest_ts = None

    async def _write(self, batch: list[Entry]) -> None:
        """Write ``batch`` (retrying until it commits), then acknowledge it."""
        backoff = 0.05
        while True:
            started = time.perf_counter()
            try:
                written = await asyncio.to_thread(
                    self.store.write, [e for _, e in batch], self._conflict
                )
                break
            except Exception as exc:
                self.healthy = False
                self.metrics.write_failures.inc()
                log.warning("batch write failed (%r); retrying in %.2fs", exc, backoff)
                if self._stopping and backoff >= self._max_backoff_s:
                    log.error("giving up on %d entries at shutdown", len(batch))
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        self.healthy = True
        self.metrics.insert_latency.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.rows_written.inc(written)
        try:
            await self.source.ack([entry_id for entry_id, _ in batch])
        except Exception as exc:
            # Stored but not acknowledged: redelivered later, and the unique key makes it a no-op.
            log.warning("acknowledging %d entries failed: %r", len(batch), exc)
        self._written_oldest_ts = None
        await self._observe()

    async def _observe(self) -> None:
        now = time.monotonic()
        if now - self._observed >= self._backlog_every_s:
            self._observed = now
            try:
                self.metrics.backlog.set(await self.source.backlog())
            except Exception as exc:
                log.warning("cannot read the backlog: %r", exc)
        stamps = (self._written_oldest_ts, _oldest_ts(self.batcher.waiting()))
        oldest = min((ts for ts in stamps if ts is not None), default=None)
        age = (events.now_ms() - oldest) / 1000 if oldest is not None else 0.0
        self.metrics.lag.set(max(0.0, age))


def _oldest_ts(entries: Sequence[Entry]) -> int | None:
    """When the oldest of ``entries`` was published (ms), if any says. A read returns entries
    stream by stream, so the oldest is not necessarily the first."""
    return min((e["ts"] for _, e in entries if "ts" in e), default=None)


def _waited(read: list[Entry]) -> float:
    """Seconds since the oldest of ``read`` was published (0 without entries)."""
    oldest = _oldest_ts(read)
    return (events.now_ms() - oldest) / 1000 if oldest is not None else 0.0
