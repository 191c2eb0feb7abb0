"""What looks like a leak when the end snapshot is compared with idle and start: flagged in the
report, never failed (a soak this short cannot tell slow growth from noise)."""

from __future__ import annotations

from bench.soak.numbers import fmt
from bench.soak.probe import Snapshot

RSS_GROWTH = 0.20  # RSS end/start above 1 + this is flagged
TASK_SLACK = 3  # gateway tasks this many above idle are tolerated (timers, pool housekeeping)
FD_SLACK = 10
# Redis keys of clients: none may outlive every client.
CLIENT_KEYS = ("keys:presence", "keys:presence_user", "keys:lock")

Flags = dict[tuple[str, str], str]  # (process, metric) → why it looks like a leak


def _gateway(name: str, end: dict[str, float], idle: dict[str, float], out: Flags) -> None:
    if end.get("connections", 0):
        out[(name, "connections")] = "connections left after every client went away"
    if end.get("local_rooms", 0):
        out[(name, "local_rooms")] = "rooms left after every client went away"
    if end.get("tasks", 0) > idle.get("tasks", 0) + TASK_SLACK:
        out[(name, "tasks")] = f"tasks not back to idle ({fmt(idle.get('tasks'))})"


def _redis(end: dict[str, float], start: dict[str, float], out: Flags) -> None:
    for kind in CLIENT_KEYS:
        if end.get(kind, 0):
            out[("redis", kind)] = "left after every client went away"
    if end.get("keys_without_ttl", 0) > start.get("keys_without_ttl", 0):
        out[("redis", "keys_without_ttl")] = "keys without TTL grew"


def flags(idle: Snapshot, start: Snapshot, end: Snapshot) -> Flags:
    """(process, metric) → why it looks like a leak."""
    out: Flags = {}
    for name, values in end.items():
        s, i = start.get(name, {}), idle.get(name, {})
        rss0, rss1 = s.get("rss_mb", 0.0), values.get("rss_mb", 0.0)
        if rss0 and rss1 > rss0 * (1 + RSS_GROWTH):
            out[(name, "rss_mb")] = f"RSS grew more than {RSS_GROWTH:.0%}"
        if name.startswith("gateway"):
            _gateway(name, values, i, out)
        # A gateway's Redis pool grows under load and stays: open files beyond it are suspect.
        pool0, pool1 = i.get("redis_sockets", 0.0), values.get("redis_sockets", 0.0)
        if name.startswith(("gateway", "nginx")) and (
            values.get("fds", 0) - pool1 > i.get("fds", 0) - pool0 + FD_SLACK
        ):
            out[(name, "fds")] = (
                f"open files not back to idle ({fmt(i.get('fds'))}, Redis pool aside)"
            )
        if values.get("client_sockets", 0):
            out[(name, "client_sockets")] = "client sockets left after every client went away"
        if name == "persister0" and values.get("backlog", 0):
            out[(name, "backlog")] = "backlog not drained"
        if name == "redis":
            _redis(values, s, out)
    return out
