"""``python -m stack`` (``make stack``): the native multi-gateway topology, until Ctrl-C.

Stopping: SIGINT, SIGTERM or SIGHUP, once or many times, stop every part in order and exit 0
(1 when a part stopped by itself). The signal handler only records the signal: the main loop,
woken through ``signal.set_wakeup_fd``, does the work, so a second signal arriving while the
first is being handled (``make`` and a terminal both forward one) cannot deadlock anything.
Each part also dies with this process (``PR_SET_PDEATHSIG``, see ``stack.processes``): a SIGKILL
of the launcher leaves nothing running.
"""

from __future__ import annotations

import argparse
import io
import os
import select
import signal
import sys
from pathlib import Path
from types import FrameType

from shared.config import load_settings
from stack.processes import ROOT, StartAborted, abort_waits
from stack.topology import Stack, StackConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
    parser.add_argument(
        "--monitoring",
        action="store_true",
        help="also run Prometheus (Debian's prometheus) scraping every gateway and persister",
    )
    parser.add_argument(
        "--prometheus-port", type=int, default=9090, help="with --monitoring (0: any free port)"
    )
    parser.add_argument(
        "--scrape-interval", default="5s", help="with --monitoring: scrape and rule interval"
    )
    args = parser.parse_args(argv)
    return StackConfig(
        workdir=args.workdir.resolve(),
        gateways=args.gateways,
        broker=args.broker,
        redis=args.redis,
        persist=args.persist,
        port=args.port,
        env={"CHAT_LOG_LEVEL": "info"},
        monitoring=args.monitoring,
        prometheus_port=args.prometheus_port,
        scrape_interval=args.scrape_interval,
    )


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP, recorded by a handler that is safe to re-enter and handled by the
    main loop.

    The handler appends to a list and marks pending readiness waits as aborted: two plain
    operations, whatever it interrupted (no lock, no I/O). ``signal.set_wakeup_fd`` makes the C
    level write a byte to a pipe, which wakes :meth:`wait` at once.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        abort_waits()  # a stack still starting gives up at its next readiness poll

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, less if a signal comes; True once a stop was requested."""
        if not self.received:
            select.select([self._read], [], [], timeout)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
        return bool(self.received)

    def ignore(self) -> None:
        """Once everything has stopped: more signals must not turn a clean exit into a kill
        (at interpreter exit Python puts the default handlers back). They are blocked first: one
        arriving while its handler is being swapped would be reported by CPython as "Signal N
        ignored due to race condition", with a traceback."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


class LogTail:
    """Every part's log file, streamed with a ``name:port |`` prefix."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.offsets: dict[Path, int] = {}

    def print_new(self) -> None:
        for part in self.stack.processes():
            path = part.log_path
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
                self.offsets[path] = f.tell()
            for line in data.decode(errors="replace").splitlines():
                print(f"{part.name}:{part.port} | {line}")


def announce(stack: Stack) -> None:
    config = stack.config
    print(f"\nchat is up: open {stack.url}/  (nginx → {len(stack.gateways)} gateways)")
    print(f"  redis     {stack.redis.url}")
    print(f"  mariadb   {stack.database_url}")
    for p in stack.persisters:
        print(f"  {p.name:10}{p.url}/metrics")
    for g in stack.gateways:
        print(f"  {g.name:10}{g.url}  (gateway id {g.env['CHAT_GATEWAY_ID']})")
    if stack.prometheus is not None:
        print(f"  prometheus {stack.prometheus.url}  (alerts: {stack.prometheus.url}/alerts)")
    print(f"  logs      {config.workdir}/*/  (streamed below; Ctrl-C stops everything)\n")


def main(argv: list[str]) -> int:
    # One line per print even into a file or a pipe (tests and `make` read it as it comes).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    config = parse(argv)
    # Before anything starts: from here on a stop signal never kills us half-way.
    signals = StopSignals()
    try:
        return run(config, signals)
    finally:
        signals.ignore()


def run(config: StackConfig, signals: StopSignals) -> int:
    """Start the stack, stream its logs until a stop signal or a part's death, stop it."""
    # Every chat process inherits this environment: an invalid CHAT_* stops us before anything
    # starts, with the same one-line errors as theirs.
    load_settings()
    config.workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(config)
    print(f"starting: {config}")
    try:
        stack.start()  # on any failure it has stopped what it started
    except StartAborted:
        print("stopped while starting", flush=True)
        return 0
    announce(stack)
    tail = LogTail(stack)
    code = 0
    try:
        while not signals.wait(0.2):
            tail.print_new()
            dead = [p for p in stack.processes() if not p.running]
            if dead:
                print(f"stopped unexpectedly: {[p.name for p in dead]}")
                code = 1
                break
    finally:
        print("stopping…")
        stack.stop()  # more signals meanwhile are only recorded: they cannot cut it short
        tail.print_new()
        print("stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
