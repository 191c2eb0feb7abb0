"""Redis's keys, counted by the ``shared.keys`` builder that made them."""

from __future__ import annotations

from collections import Counter

import redis

from shared import keys

# The kinds a snapshot always shows (0 when absent); a channel ("room") is never a key.
KINDS = ("seq", "log", "persist", "cid", "presence", "presence_user", "lock", "other")


def redis_keys(client: redis.Redis) -> dict[str, float]:
    """Key count, keys by kind (``keys:<kind>``), keys without a TTL, memory."""
    names = [k.decode(errors="replace") for k in client.scan_iter(count=1000)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    ttls = pipe.execute() if names else []
    kinds = Counter(keys.kind(name) for name in names)
    info = client.info("memory")
    out: dict[str, float] = {
        "keys": float(client.dbsize()),
        "keys_without_ttl": float(sum(1 for t in ttls if t == -1)),
        "used_memory_mb": round(int(info["used_memory"]) / 2**20, 2),
    }
    for kind in KINDS:
        out[f"keys:{kind}"] = float(kinds.get(kind, 0))
    return out
