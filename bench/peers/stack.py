"""A peer behind nginx: N Socket.IO processes (Node or python-socketio) sharing one Redis, and
the project's nginx template in front of them, for the same load generator as the project."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis

from bench.peers.install import NODE_DIR, PYTHON_DIR, node_binary, python_peer_binary
from stack.processes import Nginx, WebProcess, wait_until

PeerKind = Literal["node", "python"]

# A Redis channel every process of a peer subscribes to once its pub/sub is up: the stack is
# ready when Redis counts one subscriber per process (a process answering HTTP may not be yet).
SUBSCRIBED_CHANNEL: dict[PeerKind, str] = {
    "node": "socket.io-request#/#",  # @socket.io/redis-adapter's request channel
    "python": "socketio",  # AsyncRedisManager's channel
}


@dataclass
class PeerProcess(WebProcess):
    """One Socket.IO process of a peer; ready when ``/healthz`` answers 200."""

    redis_url: str = ""
    label: str = "peer1"  # its name in the load generator's hello and the CPU samples

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/"


@dataclass
class NodePeer(PeerProcess):
    """``node bench/peers/node/server.js``: socket.io 4.8 with the Redis adapter."""

    name = "peer-node"

    def command(self) -> list[str]:
        node = node_binary()
        if node is None:
            raise FileNotFoundError("node is not installed (ensure_node_peer installs it)")
        return [node, str(NODE_DIR / "server.js"), str(self.port), self.redis_url, self.label]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "NODE_ENV": "production"}


@dataclass
class PythonPeer(PeerProcess):
    """python-socketio with ``AsyncRedisManager`` under uvicorn, from its own virtualenv."""

    name = "peer-python"

    def command(self) -> list[str]:
        return [
            str(python_peer_binary()), "-m", "uvicorn", "--app-dir", str(PYTHON_DIR),
            "app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PEER_REDIS_URL": self.redis_url, "PEER_NAME": self.label}


PEER_CLASSES: dict[PeerKind, type[PeerProcess]] = {"node": NodePeer, "python": PythonPeer}


@dataclass
class PeerStack:
    """The running peer: its processes and the nginx in front of them."""

    kind: PeerKind
    peers: list[PeerProcess] = field(default_factory=list)
    nginx: Nginx | None = None

    @property
    def url(self) -> str:
        """The Socket.IO endpoint through nginx (``LoadConfig(client="socketio")``)."""
        assert self.nginx is not None
        return f"ws://127.0.0.1:{self.nginx.port}/socket.io/"

    def pids(self) -> dict[str, int]:
        """Name → pid of every running part (``peer1``…, ``nginx``), for the CPU sampler."""
        parts = [*self.peers, *([self.nginx] if self.nginx is not None else [])]
        out: dict[str, int] = {}
        for part in parts:
            if part.proc is not None:
                out[part.label if isinstance(part, PeerProcess) else "nginx"] = part.proc.pid
        return out

    def stop(self) -> None:
        """nginx first (no new connections), then the peers."""
        if self.nginx is not None:
            self.nginx.stop()
        for peer in reversed(self.peers):
            peer.stop()


def wait_subscribed(redis_url: str, channel: str, count: int, timeout: float = 15.0) -> None:
    """Wait until Redis counts ``count`` subscribers of ``channel``."""
    client = redis.Redis.from_url(redis_url)
    try:

        def subscribed() -> bool:
            return int(client.pubsub_numsub(channel)[0][1]) >= count

        wait_until(subscribed, timeout, f"{count} subscriber(s) of {channel}")
    finally:
        client.close()


@contextlib.contextmanager
def peer_stack(
    kind: PeerKind, workdir: Path, redis_url: str, processes: int = 3
) -> Iterator[PeerStack]:
    """Start ``processes`` peer processes on ``redis_url`` and nginx in front of them (the
    project's template, round robin), wait until all are subscribed, yield, stop them all.

    Install first with ``ensure_node_peer()`` / ``ensure_python_peer()``.
    """
    cls = PEER_CLASSES[kind]
    stack = PeerStack(kind)
    try:
        for i in range(1, processes + 1):
            peer = cls(workdir / f"peer{i}", redis_url=redis_url, label=f"peer{i}")
            stack.peers.append(peer)
            peer.start()
        wait_subscribed(redis_url, SUBSCRIBED_CHANNEL[kind], processes)
        stack.nginx = Nginx(
            workdir / "nginx", upstreams=[f"127.0.0.1:{p.port}" for p in stack.peers]
        )
        stack.nginx.start()
        yield stack
    finally:
        stack.stop()
