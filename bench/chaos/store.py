"""The database side of the verdict: wait for the persister to settle, then read every row."""

from __future__ import annotations

import time

from bench.chaos.records import Row
from stack.topology import Stack

SETTLED_S = 3.0  # the row count unchanged this long (the persister flushes every second)
POLL_S = 0.5


def _count(stack: Stack) -> int | None:
    try:
        return int(stack.mariadb.query("chat", "SELECT COUNT(*) FROM message")[0][0])
    except Exception:  # the database may be restarting: try again at the next poll
        return None


def wait_stored(stack: Stack, acked: int, timeout: float) -> tuple[int, float]:
    """Wait until at least ``acked`` rows are stored and their count stopped changing, or
    ``timeout``; returns (rows, seconds waited)."""
    started = time.monotonic()
    last, since = -1, started
    while True:
        now = time.monotonic()
        count = _count(stack)
        if count is not None and count != last:
            last, since = count, now
        if last >= acked and now - since >= SETTLED_S:
            break
        if now - started > timeout:
            break
        time.sleep(POLL_S)  # polling a count: there is no event to wait on
    return last, time.monotonic() - started


def read_rows(stack: Stack) -> tuple[list[Row], list[Row]]:
    """Every ``message`` row and every ``message_conflict`` row, as (room, seq, text)."""
    rows, conflicts = (
        [
            Row(str(room), int(seq), str(text))
            for room, seq, text in stack.mariadb.query(
                "chat", f"SELECT room_id, seq, content FROM {table}"
            )
        ]
        for table in ("message", "message_conflict")
    )
    return rows, conflicts
