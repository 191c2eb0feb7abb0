"""The peers of ``make bench`` (experiment P): each Socket.IO app, two processes on one Redis
behind the project's nginx, driven by the project's load generator in its Socket.IO mode. It
asserts completion and correctness, never a speed.

The first run on a machine installs the peer (``npm ci``, or the python-socketio virtualenv).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.peers import PeerKind, ensure_node_peer, ensure_python_peer, peer_stack
from loadtests.runner import LoadConfig, run_load
from loadtests.worker import Phase
from tests.conftest import RedisServer

USERS = 40
ROOMS = [f"room{i}" for i in range(8)]
INSTALL: dict[PeerKind, Callable[[], None]] = {
    "node": ensure_node_peer,
    "python": ensure_python_peer,
}


@pytest.mark.parametrize("kind", ["node", "python"])
def test_peer_delivers_every_message_across_processes(
    kind: PeerKind, redis_server: RedisServer, tmp_path: Path
) -> None:
    INSTALL[kind]()
    with peer_stack(kind, tmp_path / kind, redis_server.url, processes=2) as stack:
        assert set(stack.pids()) == {"peer1", "peer2", "nginx"}
        # Every user in every room, each sending in turn to each: a user on one process gets
        # every other user's messages only if the Redis fan-out between processes works.
        config = LoadConfig(
            urls=[stack.url],
            users=USERS,
            phases=[Phase("ramp", 0.5, 40.0, measured=False), Phase("steady", 2.5, 40.0)],
            rooms=ROOMS,
            room_mode="all",
            workers=2,
            sample_every=1,
            track_senders=True,
            client="socketio",
            progress=False,
        )
        result = run_load(config, stack.pids())
    assert result.problems() == []
    assert result.connected == USERS
    assert sorted(result.gateways) == ["peer1", "peer2"]  # users landed on both processes
    assert result.cross_delivery == 1.0
    sent = sum(p.counts.get("sent", 0) for p in result.phases)
    assert sent > 0
    # The last counter of each (room, sender) stream accounts for every message sent...
    assert sum(last + 1 for last in result.last_seq.values()) == sent
    # ...and every user received each one exactly once: deliveries = messages x room size.
    assert sum(p.counts.get("delivered", 0) for p in result.phases) == sent * USERS
    assert sum(p.counts.get("echoed", 0) for p in result.phases) == sent
    measured = result.measured
    assert measured.latency.count > 0
    assert set(measured.procs) >= {"peer1", "peer2", "nginx", "loadgen0", "loadgen1"}
