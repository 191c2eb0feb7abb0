"""One class per kind of process the stack runs, each started on a free port and awaited until
ready (readiness is polled: these are processes we start, not events we can subscribe to).

Every process started here dies with its starter: each child asks the kernel for SIGTERM when the
thread that forked it ends (``PR_SET_PDEATHSIG``), so even a SIGKILL of ``python -m stack`` leaves
nothing running. The kernel ties that signal to the forking *thread*, not the process: start
processes from the main thread (``python -m stack`` has no other); from any other thread they are
started without it, since they would otherwise be stopped as soon as that thread ends.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process dies (SIGKILL
    included), or None where that is not possible (not Linux, or not on the main thread).

    SIGTERM rather than SIGKILL: every part stops cleanly on it (nginx stops its workers, MariaDB
    and Redis shut down, gateways close their sockets with 1001, persisters flush). It runs in the
    forked child before ``exec``, so it only calls ``prctl`` and ``getppid``; if the parent died
    before ``prctl`` took effect, nobody would signal the child: it exits at once instead.
    """
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _LIBC.prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class StartAborted(Exception):
    """A stop was requested (a signal) while waiting for a part to be ready."""


_aborted = False


def abort_waits() -> None:
    """Make every current and future :func:`wait_until` raise :class:`StartAborted`.

    Safe from a signal handler, however often re-entered: it only assigns a module variable.
    """
    global _aborted
    _aborted = True


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "it") -> None:
    """Poll ``predicate`` until true, or raise ``TimeoutError`` (``StartAborted`` once
    :func:`abort_waits` was called)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _aborted:
            raise StartAborted(f"stop requested while waiting for {what}")
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
            # in order, instead of reaching every part at once. It dies with the runner.
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            return self.ready()

        try:
            wait_until(up, self.ready_timeout, f"{self.name} on port {self.port}")
        except BaseException:
            # Not ready (timed out, exited, or a stop was requested): nothing stays behind.
            self.stop(timeout=10)
            raise
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
            preexec_fn=die_with_parent(),
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


MONITORING = ROOT / "monitoring"
SCRAPE_JOBS = ("chat-gateway", "chat-persister")  # the job names of every shipped config


@dataclass
class Prometheus(WebProcess):
    """A private Prometheus (Debian's ``prometheus``) scraping the stack's gateways and persisters,
    with the shipped alert rules (``monitoring/prometheus/rules.yml``).

    Targets come from files (``file_sd_configs``) that :meth:`set_targets` rewrites, so a gateway
    added later is scraped without a restart.
    """

    scrape_interval: str = "5s"
    targets: dict[str, list[str]] = field(default_factory=dict)  # job -> ["127.0.0.1:port", ...]
    rules: Path = MONITORING / "prometheus" / "rules.yml"
    name = "prometheus"

    @property
    def conf(self) -> Path:
        return self.dir / "prometheus.yml"

    def targets_file(self, job: str) -> Path:
        return self.dir / "targets" / f"{job}.json"

    def set_targets(self, job: str, targets: list[str]) -> None:
        """Replace the targets of ``job`` (written atomically: Prometheus watches the file)."""
        self.targets[job] = list(targets)
        path = self.targets_file(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps([{"targets": self.targets[job]}] if targets else []))
        temporary.replace(path)

    def config(self) -> dict[str, Any]:
        """The configuration (JSON is YAML): one job per part kind, plus Prometheus itself."""
        jobs: list[dict[str, Any]] = [
            {
                "job_name": job,
                "file_sd_configs": [{"files": [str(self.targets_file(job))]}],
            }
            for job in SCRAPE_JOBS
        ]
        jobs.append(
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]}
        )
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(self.rules)],
            "scrape_configs": jobs,
        }

    def prepare(self) -> None:
        for job in SCRAPE_JOBS:
            self.set_targets(job, self.targets.get(job, []))
        self.conf.write_text(
            "# Generated by `python -m stack --monitoring`.\n" + json.dumps(self.config(), indent=2)
        )

    def command(self) -> list[str]:
        return [
            binary("prometheus", "/usr/bin/prometheus"),
            f"--config.file={self.conf}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        try:
            return http_get(self.url + "/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``: the ``data`` of a successful answer, else ``RuntimeError``."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"{path} {params}: HTTP {status}: {body[:500]!r}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now; the vector's samples (a scalar comes back as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in {"scalar", "string"}:
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result
