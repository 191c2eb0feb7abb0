"""Shared fixtures: real servers on free ports, in temp dirs, and a protocol-speaking client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
import websockets
import yaml
from websockets.asyncio.client import ClientConnection

from stack.cluster import LocalRedisCluster
from stack.processes import (
    ROOT,
    ChatProcess,
    MariaDB,
    RedisServer,
    free_port,
    http_get,
    wait_until,
)

# Re-exported for the tests: one place to import fixtures' helpers from.
__all__ = [
    "ROOT",
    "Client",
    "MariaDB",
    "RedisServer",
    "free_port",
    "http_get",
    "join",
    "send_acked",
    "wait_until",
]

# Property tests assert behaviour, never speed: no deadlines, no "too slow" health checks
# (a busy 2-core CI machine must not turn them red).
hypothesis.settings.register_profile(
    "chat", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("chat")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The test suite runs the same process classes as `make stack`.
ChatServer = ChatProcess


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis for one test."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A fresh local Redis Cluster (3 primaries, 3 replicas) for one test, stopped at teardown."""
    local = LocalRedisCluster(tmp_path / "cluster").start()
    try:
        yield local
    finally:
        local.stop()
        assert not any(node.running for node in local.nodes)


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
        server = ChatProcess(data_dir or tmp_path, env=env, module=module)
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


@pytest.fixture
async def close_clients(anyio_backend: str) -> AsyncIterator[None]:
    """Close every client the test opened, on the test's own event loop."""
    yield
    while OPEN_CLIENTS:
        client = OPEN_CLIENTS.pop()
        await client.ws.close()
        client.ws.transport.abort()


class Client:
    """A protocol client: flattens array frames into events and keeps the raw frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Any] = []
        self.hello: dict[str, Any] = {}  # the server's hello, once seen
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
        event = self._pending.pop(0)
        if event["type"] == "hello":
            self.hello = event
        return event

    def unread(self, events: list[dict[str, Any]]) -> None:
        """Put ``events`` back to be read again next, in order."""
        self._pending[:0] = events

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


async def send_acked(client: Client, room: str, text: str, cid: str) -> dict[str, Any]:
    """Send until acknowledged (the echo), resending with the same cid after ``unavailable``.
    Other events stay unread for the test."""
    others: list[dict[str, Any]] = []
    try:
        while True:
            await client.send(type="send", room=room, text=text, cid=cid)
            while True:
                event = await client.next(timeout=30)
                if event["type"] == "message" and event.get("cid") == cid:
                    others.append(event)  # the echo is also the room's message
                    return event
                if event["type"] == "error" and event.get("cid") == cid:
                    assert event["code"] == "unavailable", event
                    break
                others.append(event)
            await asyncio.sleep(0.05)  # retry backoff, as a client would
    finally:
        client.unread(others)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll an async ``check`` until true, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def message_table_locked(mariadb: MariaDB, mysql_url: str) -> Iterator[Any]:
    """``LOCK TABLES message WRITE`` on a connection of its own (yielded: it may read the
    table) until the block ends: every other insert into ``message`` waits meanwhile, as on a
    stalled disk."""
    lock = mariadb.connect(mysql_url.rsplit("/", 1)[1].split("?")[0])
    try:
        with lock.cursor() as cur:
            cur.execute("LOCK TABLES message WRITE")
        yield lock
        with lock.cursor() as cur:
            cur.execute("UNLOCK TABLES")
    finally:
        lock.close()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize directory``, parsed (the test is skipped without kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the checks before this one still ran")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
