"""Shared fixtures: real servers on free ports, in temp dirs, and a protocol-speaking client."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` (readiness of a process we started) until true or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    """GET a URL; returns (status, body) for any status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class ChatServer:
    """A real server process (``python -m embedded`` by default) on a free port."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    module: str = "embedded"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ChatServer:
        env = {
            **os.environ,
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.port),
            "CHAT_PERSISTER_PORT": str(self.port),
            "CHAT_DATA_DIR": str(self.data_dir),
            "CHAT_LOG_LEVEL": "warning",
            **self.env,
        }
        self.log_path = self.data_dir / f"{self.module}-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=ROOT, env=env, stdout=log, stderr=log
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log()}")
            try:
                return http_get(self.url + "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, what=f"{self.module} on {self.port}")
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the process and wait for it; returns its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code


@dataclass
class RedisServer:
    """A private redis-server on a free port (AOF on, so a restart keeps its data)."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, what=f"redis on {self.port}")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis for one test."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


MARIADB_INSTALL = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


@dataclass
class MariaDB:
    """A private MariaDB server (own datadir, socket and free port); root, no password."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "chat") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def start(self) -> MariaDB:
        data = self.dir / "data"
        if not data.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    MARIADB_INSTALL,
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--user=root",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self.proc = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.dir / 'mysqld.sock'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={self.dir / 'mysqld.pid'}",
                f"--log-error={self.dir / 'err.log'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=500",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, timeout=60, what=f"mariadb on {self.port}")
        return self

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            charset="utf8mb4",
            connect_timeout=2,
            autocommit=True,
        )

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mariadbd exited: {(self.dir / 'err.log').read_text()[-2000:]}")
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def create_database(self, name: str) -> str:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return self.url(name)

    def query(self, database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
            self.proc = None


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """One private MariaDB for the session; tests take their own database from it."""
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture
def mysql_url(mariadb: MariaDB, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session MariaDB, named after the test."""
    name = "t_" + re.sub(r"\W+", "_", request.node.name)[:50] + f"_{os.getpid()}_{free_port()}"
    return mariadb.create_database(name)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_server(**env)`` starts an embedded server; all are stopped at teardown."""
    servers: list[ChatServer] = []

    def start(data_dir: Path | None = None, module: str = "embedded", **env: str) -> ChatServer:
        env = {k.upper(): str(v) for k, v in env.items()}
        server = ChatServer(data_dir or tmp_path, env, module)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Any) -> ChatServer:
    """One embedded server with default settings."""
    return start_server()


OPEN_CLIENTS: list[Client] = []  # closed by the ``close_clients`` fixture after each test


class Client:
    """A protocol client: flattens array frames into events and keeps the raw frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Any] = []
        self._pending: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        kwargs.setdefault("max_size", None)
        client = cls(await websockets.connect(url, **kwargs))
        OPEN_CLIENTS.append(client)
        return client

    async def send(self, **event: Any) -> None:
        await self.ws.send(orjson.dumps(event).decode())

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next event, whatever it is."""
        while not self._pending:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.frames.append(frame)
            self._pending.extend(frame if isinstance(frame, list) else [frame])
        return self._pending.pop(0)

    async def expect(self, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """Skip events until one of type ``kind`` whose fields equal ``match``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {kind} {match} within {timeout}s")
            event = await self.next(left)
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event

    async def messages(self, room: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The next ``count`` message events of ``room`` (other events skipped)."""
        return [await self.expect("message", timeout, room=room) for _ in range(count)]

    async def closed(self, timeout: float = 10) -> int:
        """Read until the server closes; returns the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code

    async def close(self) -> None:
        await self.ws.close()


async def join(server: ChatServer, user: str, *rooms: str, **kwargs: Any) -> Client:
    """Connect as ``user``, read hello, join ``rooms`` and read each ``joined``."""
    client = await Client.connect(f"{server.ws_url}?user={user}", **kwargs)
    hello = await client.expect("hello")
    assert hello["user"] == user
    for room in rooms:
        await client.send(type="join", room=room)
        await client.expect("joined", room=room)
    return client
