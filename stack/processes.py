"""One class per kind of process the stack runs, each started on a free port and awaited until
ready (readiness is polled: these are processes we start, not events we can subscribe to)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "it") -> None:
    """Poll ``predicate`` until true, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    """GET a URL; returns (status, body) for any HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def binary(name: str, *fallbacks: str) -> str:
    """The path of a system binary (``/usr/sbin`` is often not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for path in fallbacks:
        if Path(path).exists():
            return path
    raise FileNotFoundError(f"{name} is not installed (make system-deps installs it)")


@dataclass
class Process:
    """A child process with a log file; subclasses say how to start it and when it is ready."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    name = "process"
    ready_timeout = 30.0

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}-{self.port}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time set-up before the first start (data directories)."""

    def start(self) -> Any:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl-C reaches the stack runner, which stops every part
            # in order, instead of reaching every part at once.
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return self.ready()

        wait_until(up, self.ready_timeout, f"{self.name} on port {self.port}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
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
class WebProcess(Process):
    """A process that answers HTTP (and WebSockets) on its port; ready when /healthz says so."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def ready(self) -> bool:
        try:
            return http_get(self.url + "/healthz", timeout=1)[0] == 200
        except OSError:
            return False


@dataclass
class ChatProcess(WebProcess):
    """``python -m gateway|persister|embedded`` configured by ``CHAT_*`` variables."""

    env: dict[str, str] = field(default_factory=dict)
    module: str = "embedded"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.module

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.port),
            "CHAT_PERSISTER_PORT": str(self.port),
            "CHAT_DATA_DIR": str(self.dir),
            "CHAT_LOG_LEVEL": "warning",
            **self.env,
        }


@dataclass
class RedisServer(Process):
    """A private redis-server (AOF on: a restart keeps every acknowledged message)."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            binary("redis-server", "/usr/bin/redis-server"),
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--dir", str(self.dir), "--logfile", "",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@dataclass
class MariaDB(Process):
    """A private MariaDB server: own datadir, socket and port; root without a password."""

    name = "mariadb"
    ready_timeout = 60.0

    def url(self, database: str = "chat") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def prepare(self) -> None:
        if self.data.exists():
            return
        result = self._install()
        if result.returncode != 0:
            # Seen once when two installs ran at the same moment on one machine: start afresh.
            shutil.rmtree(self.data, ignore_errors=True)
            result = self._install()
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")

    def _install(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                binary("mariadb-install-db", "/usr/bin/mariadb-install-db"),
                "--no-defaults", f"--datadir={self.data}",
                "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root",
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip

    def command(self) -> list[str]:
        return [
            binary("mariadbd", "/usr/sbin/mariadbd"),
            "--no-defaults", f"--datadir={self.data}", f"--socket={self.dir / 'mysqld.sock'}",
            f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
            f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M",
            "--innodb-flush-log-at-trx-commit=1", "--max-connections=500",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin",
        ]  # fmt: skip

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=database,
            charset="utf8mb4", connect_timeout=2, autocommit=True,
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def create_database(self, name: str) -> str:
        """Create ``name`` (utf8mb4, binary collation) and return its SQLAlchemy URL."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        return self.url(name)

    def query(self, database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())


NGINX_MAIN = Template(
    """# Generated by `python -m stack` from nginx/templates/chat.conf.template.
daemon off;
user root;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 65536;
http {
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/chat.conf;
}
"""
)


def render_chat_conf(upstreams: list[str], listen: str, access_log: str) -> str:
    """The shared template with its variables filled (what the nginx image's envsubst does)."""
    template = (ROOT / "nginx" / "templates" / "chat.conf.template").read_text()
    servers = "\n    ".join(f"server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)
    return Template(template).safe_substitute(
        CHAT_UPSTREAM_SERVERS=servers, CHAT_LISTEN_PORT=listen, CHAT_ACCESS_LOG=access_log
    )


@dataclass
class Nginx(WebProcess):
    """A private nginx in front of the gateways, from the shared template."""

    upstreams: list[str] = field(default_factory=list)
    name = "nginx"

    @property
    def conf(self) -> Path:
        return self.dir / "nginx.conf"

    def prepare(self) -> None:
        (self.dir / "chat.conf").write_text(
            render_chat_conf(self.upstreams, f"127.0.0.1:{self.port}", str(self.dir / "access.log"))
        )
        self.conf.write_text(NGINX_MAIN.substitute(dir=self.dir))

    def command(self) -> list[str]:
        nginx = binary("nginx", "/usr/sbin/nginx")
        return [nginx, "-c", str(self.conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")]

    def reload(self) -> None:
        """Re-read the configuration (``nginx -s reload``), e.g. after changing upstreams."""
        self.prepare()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
