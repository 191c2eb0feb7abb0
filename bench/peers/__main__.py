"""``python -m bench.peers --kind node|python``: one short, verified load run against a peer.

Starts a private Redis, the peer's processes behind nginx and the load generator (users spread
over the rooms, every user sending), then prints the measured phase's summary as JSON and the
verification verdict. Everything runs on 127.0.0.1 and stops when the run ends.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.peers.install import ensure_node_peer, ensure_python_peer
from bench.peers.stack import PeerKind, peer_stack
from loadtests.runner import LoadConfig, LoadResult, run_load
from loadtests.worker import Phase
from stack.processes import RedisServer


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--kind", choices=["node", "python"], default="node")
    parser.add_argument("--processes", type=int, default=3, help="peer processes behind nginx")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=20, help="user i is in room i %% rooms")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s over all users")
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured phase")
    parser.add_argument("--ramp", type=float, default=2.0, help="an unmeasured phase before it")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    return parser.parse_args(argv)


def run(kind: PeerKind, args: argparse.Namespace, work: Path) -> LoadResult:
    """Install the peer where needed, start it with its Redis, and run the load."""
    if kind == "node":
        ensure_node_peer()
    else:
        ensure_python_peer()
    redis = RedisServer(work / "redis").start()
    try:
        with peer_stack(kind, work, redis.url, args.processes) as stack:
            config = LoadConfig(
                urls=[stack.url],
                users=args.users,
                phases=[
                    Phase("ramp", args.ramp, args.rate, measured=False),
                    Phase("steady", args.seconds, args.rate),
                ],
                rooms=[f"{kind}-r{i}" for i in range(args.rooms)],
                room_mode="spread",
                workers=args.workers,
                client="socketio",
                label=f"peer-{kind}",
            )
            pids = stack.pids()
            assert redis.proc is not None
            return run_load(config, {**pids, "redis": redis.proc.pid})
    finally:
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        result = run(args.kind, args, Path(tmp))
    measured = result.measured
    summary = {
        "kind": args.kind,
        "processes": args.processes,
        "users": args.users,
        "rooms": args.rooms,
        "connected": result.connected,
        "users_per_process": dict(result.gateways),
        **measured.summary(),
        "cpu_pct": {name: round(measured.cpu(name)) for name in sorted(measured.procs)},
        "verified": result.ok,
        "problems": result.problems(),
        "anomalies": result.anomalies[:5],
    }
    print(json.dumps(summary, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
