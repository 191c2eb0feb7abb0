"""``python -m stack`` (``make stack``): the native multi-gateway topology, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from shared.config import load_settings
from stack.processes import ROOT
from stack.topology import Stack, StackConfig


def parse(argv: list[str]) -> StackConfig:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--broker", choices=["redis", "memory"], default="redis")
    parser.add_argument(
        "--redis", choices=["single", "cluster"], default="single", help="one Redis or a cluster"
    )
    parser.add_argument("--persist", choices=["async", "sync"], default="async")
    parser.add_argument("--port", type=int, default=8080, help="nginx port")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".stack")
    args = parser.parse_args(argv)
    return StackConfig(
        workdir=args.workdir.resolve(),
        gateways=args.gateways,
        broker=args.broker,
        redis=args.redis,
        persist=args.persist,
        port=args.port,
        env={"CHAT_LOG_LEVEL": "info"},
    )


def tail(stack: Stack, stop: threading.Event) -> None:
    """Stream every log file, each line prefixed with its process."""
    offsets: dict[Path, int] = {}
    while not stop.wait(0.2):
        for part in stack.processes():
            path = part.log_path
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offsets.get(path, 0))
                data = f.read()
                offsets[path] = f.tell()
            for line in data.decode(errors="replace").splitlines():
                print(f"{part.name}:{part.port} | {line}", flush=True)


def main(argv: list[str]) -> None:
    config = parse(argv)
    # Every chat process inherits this environment: an invalid CHAT_* stops us before anything
    # starts, with the same one-line errors as theirs.
    load_settings()
    config.workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(config)
    print(f"starting: {config}", flush=True)
    stack.start()
    print(f"\nchat is up: open {stack.url}/  (nginx → {len(stack.gateways)} gateways)")
    print(f"  redis     {stack.redis.url}")
    print(f"  mariadb   {stack.database_url}")
    for p in stack.persisters:
        print(f"  {p.name:10}{p.url}/metrics")
    for g in stack.gateways:
        print(f"  {g.name:10}{g.url}  (gateway id {g.env['CHAT_GATEWAY_ID']})")
    print(f"  logs      {config.workdir}/*/  (streamed below; Ctrl-C stops everything)\n")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    tailer = threading.Thread(target=tail, args=(stack, stopping), daemon=True)
    tailer.start()
    try:
        while not stopping.is_set():
            time.sleep(0.5)
            dead = [p for p in stack.processes() if not p.running]
            if dead:
                print(f"stopped unexpectedly: {[p.name for p in dead]}", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        stopping.set()
        print("stopping…", flush=True)
        stack.stop()
        tailer.join()


if __name__ == "__main__":
    main(sys.argv[1:])
