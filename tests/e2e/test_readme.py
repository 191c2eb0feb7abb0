"""The README's commands work as written (issue 14, item 3).

The by-hand topology block (two gateways and a persister on a Redis and a MariaDB) is found by
its marker comment, its documented defaults (URLs, ports) are replaced by a private Redis, a
private MariaDB database and free ports — each replacement must happen, so a README change
cannot silently bypass the test — and its lines run as a shell would: foreground commands to
completion, ``... &`` commands in the background, each in a process group of its own, stopped at
the end as ``kill %N`` stops a job. Commands that cannot run that way here (Docker, a fixed
port) are tested through what they run: ``make run`` on a free port, ``make token`` against a
token-mode server, ``make stack``/``up``/``down`` through ``make -n``.

Every command runs from the repository root with ``.venv/bin`` first on PATH, none of the test
run's ``CHAT_*`` variables, and ``MAKEFLAGS=-o .venv/.installed``: the shared ``.venv`` is used
as it is, never reinstalled under other tests' feet (``make test`` brings it up to date first).

The README's other commands and their tests (e2e/ unless said):

- ``make run``, ``make run PORT=18000``: test_make_run_serves_chat_and_stops_on_ctrl_c.
- ``make migrate CHAT_DATABASE_URL=...`` (MariaDB): the by-hand block, run here; ``make migrate``
  (SQLite in CHAT_DATA_DIR): integration/test_migrations.py (``make -n`` and the command).
- ``make token NAME=alice ROOMS='team-*'``: test_make_token_mints_what_the_gateway_accepts.
- ``make stack`` with its variables, ``MONITORING=1 PROMETHEUS_PORT=9090`` included:
  test_make_stack_passes_its_variables; what it runs: integration/test_stack_lifecycle.py,
  test_stack.py, test_monitoring.py.
- ``make up`` / ``make down``: test_make_up_and_down_run_docker_compose; the compose file and the
  ``kubectl apply -k`` overlays: integration/test_deploy_files.py, unit/test_monitoring_files.py.
- every ``python -m X`` and ``make Y``: test_every_documented_module_and_target_exists.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import anyio
import pytest

from stack.__main__ import parse
from stack.processes import die_with_parent
from tests.conftest import (
    ROOT,
    Client,
    MariaDB,
    RedisServer,
    free_port,
    http_get,
    send_acked,
    wait_until,
)
from tests.unit.test_makefile import rules

README = ROOT / "README.md"
BY_HAND = "<!-- tests/e2e/test_readme.py: by-hand"
VENV_BIN = ROOT / ".venv" / "bin"
START_S = 60.0  # a busy 2-core machine; each part is up in about a second when idle
STOP_S = 30.0
# A clean stop: exit 0, or uvicorn's way after its graceful shutdown (it re-raises the signal).
STOPPED = {0, -signal.SIGTERM}
SHUT_DOWN = "Application shutdown complete"  # uvicorn's line after the app's own stop


def readme() -> str:
    return README.read_text()


def marked_block(marker: str) -> list[str]:
    """The lines of the ```sh block right after the line starting with ``marker``."""
    lines = readme().splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith(marker)]
    assert len(found) == 1, f"README.md must hold {marker!r} exactly once, found {len(found)}"
    start = found[0] + 1
    assert lines[start] == "```sh", f"{marker!r} must be followed by a ```sh block"
    end = lines.index("```", start + 1)
    return lines[start + 1 : end]


def code_snippets() -> list[str]:
    """Every fenced block and every inline `code` span of the README."""
    text = readme()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each documented value replaced; each must be there."""
    for documented, private in replacements.items():
        assert documented in text, f"the README no longer says {documented!r}: update this test"
        text = text.replace(documented, private)
    return text


def shell_env(**extra: str) -> dict[str, str]:
    """A new user's shell: no CHAT_* settings, the venv first on PATH, the venv left as it is."""
    drop = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_") and k not in drop}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MAKEFLAGS"] = "-o .venv/.installed"
    return {**env, **extra}


@dataclass
class Job:
    """A background command in a process group of its own (what ``&`` makes in a shell)."""

    command: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, script: str, env: dict[str, str], log: Path) -> Job:
        with log.open("ab") as out:
            # bash runs the last command of a -c script with exec: the group leader is the
            # command itself, and it dies with this test (PR_SET_PDEATHSIG survives the exec).
            proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        return cls(script.splitlines()[-1], proc, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self, sig: int) -> None:
        """``kill -SIG %N``: the whole group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the group once and wait for the command's exit code."""
        self.kill(sig)
        return self.wait()

    def wait(self) -> int:
        """The exit code, once the command ends by itself (SIGKILL and fail after STOP_S)."""
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"{self.command!r} did not stop:\n{self.output()}") from None

    def group_is_gone(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return True
        return False


def run_block(lines: list[str], env: dict[str, str], logs: Path, jobs: list[Job]) -> list[str]:
    """Run the block's lines as one shell would: ``export`` lines carry over to the following
    commands, ``cmd &`` starts a :class:`Job` (added to ``jobs`` at once, for the caller to stop
    whatever happens next), anything else must succeed before the next line. Returns what the
    foreground commands printed."""
    exports: list[str] = []
    printed: list[str] = []
    for n, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("export "):
            exports.append(line)
            continue
        background = re.fullmatch(r"(?P<command>.*[^&\s])\s*&\s*(#.*)?", line)
        if background:
            script = "\n".join([*exports, background["command"]])
            jobs.append(Job.start(script, env, logs / f"job{n}.log"))
            continue
        result = subprocess.run(
            ["bash", "-c", "\n".join([*exports, line])],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{line!r} failed:\n{result.stdout}\n{result.stderr}"
        printed.append(result.stdout)
    return printed


def ready(port: int, jobs: list[Job]) -> bool:
    for job in jobs:
        if job.proc.poll() is not None:
            raise AssertionError(f"{job.command!r} exited:\n{job.output()}")
    try:
        return http_get(f"http://127.0.0.1:{port}/readyz", timeout=1)[0] == 200
    except OSError:
        return False


async def enter(port: int, user: str, room: str) -> Client:
    """What the page does: connect as ``user`` and join ``room``."""
    client = await Client.connect(f"ws://127.0.0.1:{port}/ws?user={user}")
    await client.expect("hello", user=user)
    await client.send(type="join", room=room)
    await client.expect("joined", room=room)
    return client


# --- the by-hand topology ------------------------------------------------------------------


@dataclass
class ByHand:
    gateways: list[int]
    persister: int
    database: str
    jobs: list[Job]


@pytest.fixture
def by_hand(redis_server: RedisServer, mariadb: MariaDB, tmp_path: Path) -> Iterator[ByHand]:
    """The README's by-hand block, running on a private Redis and MariaDB and free ports."""
    assert (VENV_BIN / "python").exists(), "the README's commands use .venv/bin/python"
    database = f"readme_{os.getpid()}_{free_port()}"  # not created: `make migrate` must do it
    ports = [free_port(), free_port(), free_port()]
    script = substitute(
        "\n".join(marked_block(BY_HAND)),
        {
            "redis://127.0.0.1:6379/0": redis_server.url,
            "mysql+pymysql://root@127.0.0.1:3306/chat": mariadb.url(database),
            "CHAT_PORT=8001": f"CHAT_PORT={ports[0]}",
            "CHAT_PORT=8002": f"CHAT_PORT={ports[1]}",
            "CHAT_PERSISTER_PORT=8003": f"CHAT_PERSISTER_PORT={ports[2]}",
        },
    )
    # Nothing of the block may still point at a documented default (a third gateway, another
    # URL): every port and every URL left in it is ours.
    assert set(re.findall(r"CHAT_\w*PORT=(\d+)", script)) == {str(p) for p in ports}, script
    urls = set(re.findall(r"\b(?:redis|mysql\+pymysql)://[^\s']+", script))
    assert urls == {redis_server.url, mariadb.url(database)}, script

    jobs: list[Job] = []
    try:
        printed = run_block(script.splitlines(), shell_env(), tmp_path, jobs)
        assert len(jobs) == 3, [job.command for job in jobs]
        # `make migrate` created the database (the test did not) and brought it to head.
        assert f"database '{database}' at" in printed[0] and "(head)" in printed[0], printed
        for port in ports:
            wait_until(functools.partial(ready, port, jobs), START_S, f"/readyz on {port}")
        yield ByHand(ports[:2], ports[2], database, jobs)
    finally:
        for job in jobs:
            if job.proc.poll() is None:
                job.stop()


@pytest.mark.anyio
async def test_the_by_hand_topology_block_runs_as_written(
    by_hand: ByHand, mariadb: MariaDB, close_clients: None
) -> None:
    room = "readme"
    alice = await enter(by_hand.gateways[0], "alice", room)
    bob = await enter(by_hand.gateways[1], "bob", room)
    assert alice.hello["gateway"] != bob.hello["gateway"]

    # The echo acknowledges a message: alice's is seq 1 before bob sends his.
    await send_acked(alice, room, "hello from the first gateway", "a1")
    await send_acked(bob, room, "hello from the second gateway", "b1")
    expected = [
        (1, "alice", "hello from the first gateway"),
        (2, "bob", "hello from the second gateway"),
    ]
    for client in (alice, bob):  # both, in the same order
        seen = await client.messages(room, 2)
        assert [(m["seq"], m["user"], m["text"]) for m in seen] == expected

    def stored() -> list[tuple[Any, ...]]:
        return mariadb.query(
            by_hand.database,
            "SELECT seq, sender_id, content FROM message WHERE room_id = %s ORDER BY seq",
            room,
        )

    wait_until(lambda: stored() == expected, 15, "the persister to store both messages")

    # `kill %1 %2 %3`: each gateway closes its clients with 1001; every part stops cleanly.
    gateway_jobs, persister_job = by_hand.jobs[:2], by_hand.jobs[2]
    for job, client in zip(gateway_jobs, (alice, bob), strict=True):
        job.kill(signal.SIGTERM)
        assert await client.closed() == 1001
        assert job.wait() in STOPPED and SHUT_DOWN in job.output(), job.output()
    assert persister_job.stop() in STOPPED, persister_job.output()
    assert SHUT_DOWN in persister_job.output(), persister_job.output()
    assert stored() == expected


# --- commands that cannot run as written here ----------------------------------------------


@pytest.mark.anyio
async def test_make_run_serves_chat_and_stops_on_ctrl_c(
    tmp_path: Path, close_clients: None
) -> None:
    """`make run PORT=18000` on a free port instead (`make run` is the same recipe on 8000):
    the page, a chat, and Ctrl-C (SIGINT to the terminal's process group) closes the clients
    with 1001, writes the buffered message to the SQLite file in CHAT_DATA_DIR and ends the
    whole group."""
    assert "make run " in readme() and "make run PORT=18000" in readme()
    assert dry_run("run") == "CHAT_HOST=127.0.0.1 CHAT_PORT=8000 .venv/bin/python -m embedded"

    port = free_port()
    data = tmp_path / "data"
    command = substitute("make run PORT=18000", {"PORT=18000": f"PORT={port}"})
    job = Job.start(command, shell_env(CHAT_DATA_DIR=str(data)), tmp_path / "make-run.log")
    try:
        wait_until(lambda: ready(port, [job]), START_S, f"make run on {port}")
        status, page = http_get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"<html" in page.lower()

        alice = await enter(port, "alice", "quick-start")
        bob = await enter(port, "bob", "quick-start")
        await send_acked(alice, "quick-start", "hi bob", "q1")
        [seen] = await bob.messages("quick-start", 1)
        assert (seen["user"], seen["text"]) == ("alice", "hi bob")

        job.kill(signal.SIGINT)
        assert await alice.closed() == 1001
        job.wait()
        wait_until(job.group_is_gone, STOP_S, "the whole process group to end")
    finally:
        if job.proc.poll() is None:
            job.stop(signal.SIGKILL)
    with sqlite3.connect(data / "chat.db") as db:
        rows = db.execute("SELECT seq, sender_id, content FROM message").fetchall()
    assert rows == [(1, "alice", "hi bob")]


@pytest.mark.anyio
async def test_make_token_mints_what_the_gateway_accepts(
    start_server: Any, close_clients: None
) -> None:
    """`make token NAME=alice ROOMS='team-*'`, as written, with CHAT_AUTH_SECRET set: a token-mode
    gateway with the same secret lets alice in and into team rooms only."""
    command = "make token NAME=alice ROOMS='team-*'"
    assert command in readme()
    secret = "readme-token-secret-" + "0123456789abcdef" * 2
    result = await anyio.run_process(
        ["bash", "-c", command], cwd=ROOT, env=shell_env(CHAT_AUTH_SECRET=secret), check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    token = result.stdout.decode().splitlines()[-1]  # after make's echo of the command

    server = start_server(chat_auth_secret=secret)
    client = await Client.connect(f"{server.ws_url}?token={token}")
    hello = await client.expect("hello")
    assert (hello["user"], hello["auth"]) == ("alice", "token")
    await client.send(type="join", room="team-a")
    await client.expect("joined", room="team-a")
    await client.send(type="join", room="lobby")
    refused = await client.expect("error", room="lobby")
    assert refused["code"] == "forbidden"


def dry_run(*args: str) -> str:
    """The last command ``make -n ARGS`` would run (continuation lines joined)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.replace("\\\n", " ").splitlines()
    return " ".join(lines[-1].split())


@pytest.mark.parametrize(
    ("documented", "variables", "expected"),
    [
        ("`make stack`", [], {"gateways": 3, "broker": "redis", "redis": "single", "port": 8080}),
        ("`BROKER=redis|memory`", ["BROKER=memory"], {"broker": "memory"}),
        ("`PERSIST=async|sync`", ["PERSIST=sync"], {"persist": "sync"}),
        ("`GATEWAYS=N`", ["GATEWAYS=2"], {"gateways": 2}),
        ("`REDIS=cluster`", ["REDIS=cluster"], {"redis": "cluster"}),
        ("`STACK_PORT` (8080)", ["STACK_PORT=18080"], {"port": 18080}),
        (
            "make stack MONITORING=1 PROMETHEUS_PORT=9090",
            ["MONITORING=1", "PROMETHEUS_PORT=9090"],
            {"monitoring": True, "prometheus_port": 9090},
        ),
    ],
)
def test_make_stack_passes_its_variables(
    documented: str, variables: list[str], expected: dict[str, Any]
) -> None:
    """What `make stack` runs with each documented variable; `python -m stack` itself is run by
    integration/test_stack_lifecycle.py and its topology by e2e/test_stack.py."""
    assert documented in readme()
    command = dry_run("stack", *variables).split()
    assert command[:3] == [".venv/bin/python", "-m", "stack"]
    config = parse(command[3:])
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("up", "docker compose up -d --build --scale gateway=3"),
        ("down", "docker compose down"),
    ],
)
def test_make_up_and_down_run_docker_compose(target: str, expected: str) -> None:
    """Docker is not here: the commands are checked, the compose file by
    integration/test_deploy_files.py."""
    assert "`make up` / `make down`" in readme()
    assert "docker compose up --scale gateway=3" in readme()
    assert dry_run(target) == expected


def test_every_documented_module_and_target_exists() -> None:
    """Every `python -m X` and `make Y` in the README's code names a real module and target."""
    modules: set[str] = set()
    targets: set[str] = set()
    for snippet in code_snippets():
        modules.update(re.findall(r"python -m ([\w.]+)", snippet))
        targets.update(re.findall(r"(?<![\w/.-])make ([a-z][\w-]*)", snippet))
    assert {"gateway", "persister", "embedded", "stack"} <= modules
    assert {"run", "migrate", "stack", "token", "test"} <= targets
    assert sorted(m for m in modules if find_spec(m) is None) == []
    assert sorted(targets - rules().keys()) == []
