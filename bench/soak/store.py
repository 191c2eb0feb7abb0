"""The soak's exactly-once check: MariaDB against Redis's seqs and the messages sent."""

from __future__ import annotations

import time
from typing import Any

import redis

from shared import keys
from shared.config import Settings
from stack.topology import Stack

ROOM_ROWS = (
    "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq),0), COALESCE(MAX(seq),0)"
    " FROM message WHERE room_id=%s"
)


def _rows(stack: Stack, rooms: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """Per room: rows, distinct seqs, lowest and highest seq."""
    out = {}
    for r in rooms:
        got = stack.mariadb.query("chat", ROOM_ROWS, r)[0]
        out[r] = (int(got[0]), int(got[1]), int(got[2]), int(got[3]))
    return out


def verify_store(
    stack: Stack, rooms: list[str], sent: int, timeout: float = 60.0
) -> tuple[list[str], dict[str, Any]]:
    """Wait for the persister to catch up, then compare MariaDB with Redis's seqs and the sends:
    (problems, facts for the report)."""
    client = redis.Redis.from_url(stack.redis.url)
    shards = Settings().shards
    problems: list[str] = []
    facts: dict[str, Any] = {"rooms": {}}
    head = {r: int(client.get(keys.seq(r, shards)) or 0) for r in rooms}
    facts["published"] = sum(head.values())
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(stack, rooms)
        stored = sum(c for c, _, _, _ in rows.values())
        if stored >= facts["published"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    facts["stored"] = stored
    facts["sent"] = sent
    for r in rooms:
        count, distinct, low, high = rows[r]
        n = head[r]
        facts["rooms"][r] = {"redis_seq": n, "rows": count, "distinct": distinct,
                             "min": low, "max": high}  # fmt: skip
        if not (count == distinct == high == n and low == (1 if n else 0)):
            problems.append(
                f"{r}: {count} rows, {distinct} distinct seqs {low}..{high}, expected 1..{n}"
            )
    if stored != sent:
        problems.append(f"{stored} rows stored for {sent} messages sent")
    open_rows = stack.mariadb.query(
        "chat", "SELECT COUNT(*) FROM chat_participant WHERE exited_at IS NULL"
    )
    facts["participants_open"] = int(open_rows[0][0])
    return problems, facts
