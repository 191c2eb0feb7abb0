"""``python -m stack`` stops cleanly and leaves nothing behind (issue 14, item 6).

The launcher runs as `make stack` runs it, in a process group of its own, on free ports and in a
temp work dir. What it started is read from ``/proc`` once it is up (its children, and theirs:
nginx's workers), identified by pid *and* start time so that a reused pid never counts. Every
wait polls a condition with a bound; the only sleep is the millisecond between two signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import ROOT, free_port, wait_until

STARTUP_S = 120.0  # a busy 2-core machine: MariaDB's first start dominates
STOP_S = 60.0  # the bound for a stop: every part's own graceful stop fits well inside
GATEWAYS = 2
# Direct children of an idle stack: redis-server, mariadbd, a persister, the gateways, nginx.
CHILDREN = 4 + GATEWAYS


def stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": the name may hold spaces
    return fields[0], int(fields[1]), fields[19]


def alive(pid: int, started: str) -> bool:
    """The same process (same start time) still exists and is not a zombie waiting for a reaper
    (the children of a SIGKILLed launcher are reparented: their reaper is not this test)."""
    now = stat(pid)
    return now is not None and now[2] == started and now[0] != "Z"


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time."""
    parents: dict[int, tuple[int, str]] = {}
    for pid in all_pids():
        info = stat(pid)
        if info is not None and info[0] != "Z":
            parents[pid] = (info[1], info[2])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment holds ``text`` (the work dir: every
    part gets it as a data dir, a config path or ``CHAT_DATA_DIR``)."""
    needle = text.encode()
    hits = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            blobs = [Path(f"/proc/{pid}/{part}").read_bytes() for part in ("cmdline", "environ")]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        info = stat(pid)
        if info is not None and info[0] != "Z" and any(needle in blob for blob in blobs):
            hits.append(pid)
    return hits


def graceful_stops(output: str) -> int:
    """Chat processes whose streamed log shows uvicorn's orderly shutdown (not a kill)."""
    return sum(
        1
        for line in output.splitlines()
        if line.startswith(("gateway:", "persister:")) and "Application shutdown complete" in line
    )


@dataclass
class Launcher:
    """One ``python -m stack`` and what it started."""

    proc: subprocess.Popen[bytes]
    out: Path
    workdir: Path
    started: dict[int, str] = field(default_factory=dict)  # its descendants, once recorded

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_up(self) -> None:
        """Until it printed "chat is up" (failing at once if it exited); then record its tree."""

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the launcher exited:\n{self.output()[-3000:]}")
            return "chat is up" in self.output()

        wait_until(up, STARTUP_S, "the stack to be up")
        self.started = descendants(self.pid)

    def children(self) -> list[int]:
        return [
            pid for pid in self.started if (info := stat(pid)) is not None and info[1] == self.pid
        ]

    def remaining(self) -> list[int]:
        """What it started that still runs, and anything else still using its work dir."""
        recorded = [pid for pid, started in self.started.items() if alive(pid, started)]
        return sorted(set(recorded) | set(mentioning(str(self.workdir))))

    def signal_twice(self, sig: int, group: bool = False) -> None:
        """``sig`` twice, a millisecond apart, to the launcher or to its whole process group."""
        send = (lambda: os.killpg(self.pid, sig)) if group else (lambda: os.kill(self.pid, sig))
        send()
        time.sleep(0.001)
        send()

    def assert_stopped_cleanly(self) -> None:
        try:
            code = self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the launcher still runs {STOP_S}s after the signals:\n{self.output()[-3000:]}"
            ) from None
        assert code == 0, self.output()[-3000:]
        # It waited for its children; nginx's master waited for its workers: nothing is left.
        wait_until(lambda: not self.remaining(), 10, "every part to be gone")


class Launch(Protocol):
    def __call__(self, *args: str) -> Launcher: ...


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """``launch(*extra_args)``: start ``python -m stack`` with two gateways; at teardown anything
    still running from it is killed (a failing test must not leave processes behind)."""
    launchers: list[Launcher] = []
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}

    def start(*args: str) -> Launcher:
        n = len(launchers)
        workdir = tmp_path / f"stack{n}"
        out = tmp_path / f"launcher{n}.log"
        command = [
            sys.executable, "-m", "stack", "--gateways", str(GATEWAYS),
            "--port", str(free_port()), "--workdir", str(workdir), *args,
        ]  # fmt: skip
        with out.open("wb") as log:
            # A process group of its own, as under `make` in a terminal: a group signal reaches
            # the launcher, not this test; its parts run in sessions of their own.
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        launcher = Launcher(proc, out, workdir)
        launchers.append(launcher)
        return launcher

    yield start
    for launcher in launchers:
        if launcher.proc.poll() is None:
            launcher.proc.kill()
        launcher.proc.wait()
        for pid in launcher.remaining():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_two_sigterms_a_millisecond_apart_stop_everything(launch: Launch) -> None:
    launcher = launch()
    launcher.wait_up()
    assert len(launcher.children()) == CHILDREN, launcher.started
    launcher.signal_twice(signal.SIGTERM)
    launcher.assert_stopped_cleanly()
    output = launcher.output()
    assert "stopping…" in output and output.rstrip().endswith("stopped")
    assert "Traceback" not in output
    assert graceful_stops(output) == GATEWAYS + 1, "every gateway and the persister stop in order"


def test_signals_all_through_the_stop_do_not_cut_it_short(launch: Launch) -> None:
    launcher = launch()
    launcher.wait_up()
    burst = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    sent = 0
    deadline = time.monotonic() + STOP_S
    # Whatever the launcher is doing (handling the last one, stopping a part), another comes.
    while launcher.proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, burst[sent % len(burst)])
        sent += 1
    assert sent > 100, sent
    launcher.assert_stopped_cleanly()
    output = launcher.output()
    assert "Traceback" not in output
    assert graceful_stops(output) == GATEWAYS + 1, "every gateway and the persister stop in order"


def test_sigint_to_the_whole_group_stops_everything(launch: Launch) -> None:
    launcher = launch()
    launcher.wait_up()
    assert len(launcher.children()) == CHILDREN, launcher.started
    launcher.signal_twice(signal.SIGINT, group=True)  # Ctrl-C, twice
    launcher.assert_stopped_cleanly()
    assert "Traceback" not in launcher.output()


def test_a_stop_signal_while_starting_stops_what_was_started(launch: Launch) -> None:
    launcher = launch()
    # Redis is the first part; MariaDB (seconds) and the rest are still to come.
    wait_until(lambda: descendants(launcher.pid), STARTUP_S, "the first part to start")
    launcher.started = descendants(launcher.pid)
    launcher.signal_twice(signal.SIGTERM)
    launcher.assert_stopped_cleanly()
    output = launcher.output()
    assert "stopped while starting" in output and "chat is up" not in output
    assert "Traceback" not in output


def test_sigkill_of_the_launcher_stops_every_part(launch: Launch) -> None:
    launcher = launch("--monitoring", "--prometheus-port", "0")
    launcher.wait_up()
    assert len(launcher.children()) == CHILDREN + 1, launcher.started  # + prometheus
    launcher.proc.kill()
    launcher.proc.wait()
    # Nobody is left to stop them in order: each part gets SIGTERM from the kernel
    # (PR_SET_PDEATHSIG) and stops by itself.
    wait_until(lambda: not launcher.remaining(), STOP_S, "every part to stop after the SIGKILL")
