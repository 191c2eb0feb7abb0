"""The fault kinds, one function each, on the stack's own process handles.

Each one hits its victim, keeps it down for the planned time, brings it back (same port, same
data directory) and waits until it is ready, writing down the victim and when it was hit. They
run on the main thread, so restarted processes still die with the run
(``stack.processes.die_with_parent``).
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime

import redis

from bench.chaos.records import FaultRecord
from bench.chaos.schedule import Planned
from stack.cluster import LocalRedisCluster
from stack.processes import ChatProcess, RedisServer, http_get, wait_until
from stack.topology import Stack

READY_S = 60.0  # how long a restarted part may take to be ready again


def _wait_ready(gateway: ChatProcess, timeout: float = READY_S) -> None:
    """Until the gateway answers ``/readyz`` with 200 (its subscriber is back on Redis); a
    timeout says what it answered last."""
    last = ""

    def ready() -> bool:
        nonlocal last
        try:
            status, body = http_get(gateway.url + "/readyz", timeout=2)
        except OSError as exc:
            last = repr(exc)
            return False
        last = f"{status} {body.decode(errors='replace')[:300]}"
        return status == 200

    try:
        wait_until(ready, timeout, f"{gateway.env['CHAT_GATEWAY_ID']} ready")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; /readyz said {last}") from None


def not_ready(stack: Stack, timeout: float = 30.0) -> list[str]:
    """At the end: the gateways still not ready ``timeout`` from now, with what they said."""
    deadline = time.monotonic() + timeout
    out = []
    for g in stack.gateways:
        try:
            _wait_ready(g, max(0.1, deadline - time.monotonic()))
        except TimeoutError as exc:
            out.append(str(exc))
    return out


def _gateways_ready(stack: Stack) -> None:
    for g in stack.gateways:
        _wait_ready(g)


class Fault:
    """The record of one fault as it happens: each step fills it in, so a part that does not
    come back still leaves its victim and the moment it was hit."""

    def __init__(self, p: Planned) -> None:
        self.p = p
        self.record = FaultRecord(p.kind, "?", p.at, time.monotonic(), _wall(time.monotonic()))

    def hit(self, target: str) -> None:
        """The victim is hit now."""
        self.record.target = target
        self.record.at = time.monotonic()
        self.record.wall = _wall(self.record.at)

    def note(self, detail: str) -> None:
        self.record.detail = "; ".join(x for x in (self.record.detail, detail) if x)

    def down(self) -> None:
        """Keep the victim down until the planned downtime is over (part of the schedule)."""
        time.sleep(max(0.0, self.record.at + self.p.down_s - time.monotonic()))


def _kill_and_restart(f: Fault, process: ChatProcess | RedisServer, target: str) -> None:
    f.hit(target)
    process.stop(signal.SIGKILL)
    f.down()
    process.start()


def kill_gateway(stack: Stack, f: Fault) -> None:
    """SIGKILL one gateway; its clients reconnect through nginx to the others and rejoin with
    ``since``. Restarted on its port after the downtime."""
    gateway = stack.gateways[f.p.pick % len(stack.gateways)]
    _kill_and_restart(f, gateway, gateway.env["CHAT_GATEWAY_ID"])
    f.note(f"port {gateway.port}")
    _wait_ready(gateway)


def kill_persister(stack: Stack, f: Fault) -> None:
    """SIGKILL a persister; restarted with the same consumer name, it reads its pending
    entries first."""
    persister = stack.persisters[f.p.pick % len(stack.persisters)]
    _kill_and_restart(f, persister, persister.env["CHAT_PERSISTER_ID"])


def kill_redis(stack: Stack, f: Fault) -> None:
    """SIGKILL the single Redis; restarted from its AOF (same directory, same port)."""
    server = stack.redis
    assert isinstance(server, RedisServer), "kill_redis needs CHAOS_REDIS=single"
    _kill_and_restart(f, server, f"redis :{server.port}")
    f.note("restarted from its AOF")
    _gateways_ready(stack)


def _primaries(cluster: LocalRedisCluster) -> list[int]:
    try:
        return cluster.primaries()
    except (RuntimeError, redis.RedisError, OSError):
        return []


def kill_primary(stack: Stack, f: Fault) -> None:
    """SIGKILL one primary of the cluster; once its replica is promoted (and the downtime is
    over), the old primary is restarted and rejoins as the new primary's replica."""
    cluster = stack.redis
    assert isinstance(cluster, LocalRedisCluster), "kill_primary needs CHAOS_REDIS=cluster"
    wait_until(cluster.healthy, READY_S, "the cluster healthy before a kill")
    primaries = cluster.primaries()
    victim = primaries[f.p.pick % len(primaries)]
    replica = cluster.replica_of(victim)
    f.hit(f"primary :{victim}")
    cluster.kill(victim)
    if replica is None:
        f.note("no replica to promote")
    else:
        wait_until(lambda: replica in _primaries(cluster), READY_S, "the replica's promotion")
        f.note(f"replica :{replica} promoted after {time.monotonic() - f.record.at:.1f} s")
    f.down()
    cluster.restart(victim)
    wait_until(cluster.healthy, READY_S, "the cluster healthy again")
    _gateways_ready(stack)


def restart_mariadb(stack: Stack, f: Fault) -> None:
    """Stop MariaDB (SIGTERM, a clean shutdown) and start it again on the same datadir."""
    f.hit(f"mariadb :{stack.mariadb.port}")
    stack.mariadb.stop()
    f.down()
    stack.mariadb.start()


def _accepts(port: int) -> bool:
    # A TCP connect only: an HTTP probe would go through to the gateways, and every 503 one
    # answers takes it out of nginx's rotation for fail_timeout (max_fails=1).
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def reload_nginx(stack: Stack, f: Fault) -> None:
    """SIGHUP nginx: new workers take new connections, old ones keep theirs until they close."""
    nginx = stack.nginx
    assert nginx is not None
    f.hit(f"nginx :{nginx.port}")
    nginx.reload()
    f.note("SIGHUP")
    wait_until(
        lambda: nginx.running and _accepts(nginx.port), READY_S, "nginx accepting after a reload"
    )


FAULTS: dict[str, Callable[[Stack, Fault], None]] = {
    "redis": kill_redis,
    "primary": kill_primary,
    "persister": kill_persister,
    "gateway": kill_gateway,
    "mariadb": restart_mariadb,
    "nginx": reload_nginx,
}


def inject(stack: Stack, p: Planned) -> FaultRecord:
    """Carry out one planned fault; a part that does not come back is recorded, not raised."""
    fault = Fault(p)
    try:
        FAULTS[p.kind](stack, fault)
    except (TimeoutError, RuntimeError) as exc:
        fault.note(f"FAILED: {exc}")
        return fault.record
    fault.record.restored_at = time.monotonic()
    return fault.record


def _wall(at: float) -> str:
    """A monotonic moment as local wall-clock time."""
    return datetime.fromtimestamp(time.time() - (time.monotonic() - at)).strftime("%H:%M:%S.%f")[
        :-3
    ]
