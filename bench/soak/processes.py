"""A service process's open files and TCP sockets, as the soak's snapshots count them."""

from __future__ import annotations

import contextlib

import psutil


def open_files(pid: int) -> int:
    """File descriptors of a process and its children (nginx workers)."""
    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.num_fds()
    return total


def sockets(pid: int, own_port: int, redis_port: int) -> dict[str, float]:
    """A chat process's TCP sockets: from clients (nginx), to Redis, anything else."""
    counts = {"client_sockets": 0.0, "redis_sockets": 0.0, "other_sockets": 0.0}
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return counts
    for c in conns:
        if c.status == psutil.CONN_LISTEN:
            continue
        if c.laddr and c.laddr.port == own_port:
            counts["client_sockets"] += 1
        elif c.raddr and c.raddr.port == redis_port:
            counts["redis_sockets"] += 1
        else:
            counts["other_sockets"] += 1
    return counts
