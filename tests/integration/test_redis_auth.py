"""Redis with the ACL users the deployment files ship (k8s/base/redis-statefulset.yaml, the same
as docker-compose.yml): gateways and persisters log in with the credentials in ``CHAT_REDIS_URL``,
on one Redis and on a Redis Cluster (every per-node connection included), and work without a
single denied command; nobody else gets in, and a wrong password says so
(docs/security.md, "Who can reach the data stores").
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
import yaml
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from shared import keys, redis_client
from stack.cluster import LocalRedisCluster
from tests.conftest import (
    ROOT,
    ChatServer,
    MariaDB,
    RedisServer,
    free_port,
    http_get,
    join,
    send_acked,
    wait_until,
)

pytestmark = pytest.mark.anyio

REDIS_STATEFULSET = ROOT / "k8s" / "base" / "redis-statefulset.yaml"
# A replication user for clusters one runs oneself (docs/cluster.md, "Authentication and network").
REPLICA_ACL = ["reset", "on", "+psync", "+replconf", "+ping"]


def shipped_users(passwords: dict[str, str]) -> dict[str, list[str]]:
    """The ``--user NAME RULE...`` groups of the Redis StatefulSet's args, by user name, with
    kubelet's ``$(VAR)`` references replaced by ``passwords[VAR]``."""
    (doc,) = yaml.safe_load_all(REDIS_STATEFULSET.read_text())
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    users: dict[str, list[str]] = {}
    current: list[str] | None = None
    for arg in args:
        if arg.startswith("--"):
            current = [] if arg == "--user" else None
            continue
        if current is not None:
            if not current:
                users[arg] = current
            current.append(re.sub(r"\$\((\w+)\)", lambda m: passwords[m[1]], arg))
    return {name: rules[1:] for name, rules in users.items()}


@dataclass
class AclRedis(RedisServer):
    """A private redis-server started with the shipped ``--user`` directives."""

    users: dict[str, list[str]] = field(default_factory=dict)
    admin_password: str = ""

    def command(self) -> list[str]:
        directives = [arg for name, rules in self.users.items() for arg in ("--user", name, *rules)]
        return [*super().command(), *directives]

    def ready(self) -> bool:
        try:
            with self.admin() as conn:
                return bool(conn.ping())
        except (redis.RedisError, OSError):
            return False

    def admin(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, username="default", password=self.admin_password, decode_responses=True
        )


@pytest.fixture
def passwords() -> dict[str, str]:
    # Generated as the docs say (hex: URL-safe), different for every test.
    return {
        name: secrets.token_hex(16)
        for name in ("REDISCLI_AUTH", "REDIS_GATEWAY_PASSWORD", "REDIS_PERSISTER_PASSWORD")
    }


@pytest.fixture
def acl_redis(tmp_path: Path, passwords: dict[str, str]) -> Iterator[AclRedis]:
    server = AclRedis(
        tmp_path / "redis",
        users=shipped_users(passwords),
        admin_password=passwords["REDISCLI_AUTH"],
    ).start()
    yield server
    server.stop()


def url(user: str, password: str, port: int) -> str:
    return f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{port}/0"


def denied(servers: list[redis.Redis]) -> list[dict[str, Any]]:
    """Every ACL denial the servers logged: a refused login, or a command, key or channel a user
    may not use."""
    return [entry for conn in servers for entry in conn.acl_log()]


def holds(mariadb: MariaDB, database: str, room: str, texts: list[str]) -> bool:
    """Whether the room's stored messages are exactly ``texts``."""
    sql = "SELECT content FROM message WHERE room_id = %s ORDER BY seq"
    return [row[0] for row in mariadb.query(database, sql, room)] == texts


def is_ready(process: ChatServer) -> bool:
    return http_get(process.url + "/readyz")[0] == 200


def test_the_shipped_acl_has_the_three_users(passwords: dict[str, str]) -> None:
    users = shipped_users(passwords)
    assert set(users) == {"default", "gateway", "persister"}
    for name, variable in [
        ("default", "REDISCLI_AUTH"),
        ("gateway", "REDIS_GATEWAY_PASSWORD"),
        ("persister", "REDIS_PERSISTER_PASSWORD"),
    ]:
        assert users[name][:2] == ["reset", "on"], name  # nothing inherited from the defaults
        assert [r for r in users[name] if r.startswith(">")] == [">" + passwords[variable]]
        assert "nopass" not in users[name]


async def test_gateways_and_persister_work_as_their_acl_users(
    acl_redis: AclRedis,
    passwords: dict[str, str],
    start_server: Any,
    mysql_url: str,
    mariadb: MariaDB,
) -> None:
    gateway_url = url("gateway", passwords["REDIS_GATEWAY_PASSWORD"], acl_redis.port)
    persister_url = url("persister", passwords["REDIS_PERSISTER_PASSWORD"], acl_redis.port)
    common = {"chat_broker": "redis", "chat_database_url": mysql_url}
    persister = start_server(module="persister", chat_redis_url=persister_url, **common)
    gw1, gw2 = (
        start_server(module="gateway", chat_redis_url=gateway_url, **common) for _ in range(2)
    )
    for process in (persister, gw1, gw2):
        wait_until(partial(is_ready, process), 15, f"{process.name} to be ready")

    # Across gateways: publish script, pub/sub, presence, then the persist stream into MySQL.
    ann = await join(gw1, "ann", "lobby")
    bob = await join(gw2, "bob", "lobby")
    while "bob" not in (await ann.expect("presence", room="lobby"))["joined"]:
        pass
    echo = await send_acked(ann, "lobby", "hello with a password", "c1")
    received = await bob.expect("message", room="lobby", cid="c1")
    assert received["seq"] == echo["seq"] == 1
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    wait_until(partial(holds, mariadb, database, "lobby", ["hello with a password"]), 30, "the row")
    status, body = http_get(gw2.url + "/api/rooms")
    assert status == 200 and orjson.loads(body) == [{"room": "lobby", "online": 2, "last_seq": 1}]

    with acl_redis.admin() as admin:
        assert denied([admin]) == []
        clients = admin.client_list()
    users = {c["user"] for c in clients if c["user"] != "default"}
    assert users == {"gateway", "persister"}


def test_the_acl_keeps_everyone_else_out(acl_redis: AclRedis, passwords: dict[str, str]) -> None:
    port = acl_redis.port
    with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.get("chat:{s0}:seq:lobby")  # NOAUTH: `default` needs its password
    wrong = redis.Redis(port=port, username="gateway", password="wrong")
    with wrong, pytest.raises(redis.AuthenticationError):
        wrong.ping()

    gateway_password = passwords["REDIS_GATEWAY_PASSWORD"]
    with redis.Redis(port=port, username="gateway", password=gateway_password) as gateway:
        assert gateway.set("chat:{s0}:seq:lobby", 1)
        for command in (
            ["GET", "other:key"],  # outside chat:*
            ["PUBLISH", "other", "x"],  # a channel outside chat:*
            ["KEYS", "*"],
            ["FLUSHALL"],
            ["CONFIG", "GET", "*"],
            ["ACL", "LIST"],
            ["CLIENT", "KILL", "TYPE", "normal"],
            ["SHUTDOWN"],
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                gateway.execute_command(*command)

    persister_password = passwords["REDIS_PERSISTER_PASSWORD"]
    with redis.Redis(port=port, username="persister", password=persister_password) as persister:
        assert persister.xadd("chat:{s0}:persist", {"e": "{}"})
        for command in (
            ["GET", "chat:{s0}:seq:lobby"],  # a room's keys: only the gateways
            ["PUBLISH", "chat:{s0}:room:lobby", "x"],
            ["EVAL", "return 1", "0"],
            ["FLUSHALL"],
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                persister.execute_command(*command)


async def test_a_wrong_password_is_a_clear_readiness_failure(
    acl_redis: AclRedis, start_server: Any, tmp_path: Path
) -> None:
    wrong = url("gateway", "not-the-password", acl_redis.port)
    gateway = start_server(module="gateway", chat_broker="redis", chat_redis_url=wrong)
    reason = ""

    def refused() -> bool:
        nonlocal reason
        status, body = http_get(gateway.url + "/readyz")
        reason = orjson.loads(body).get("reason", "")
        return status == 503 and "AuthenticationError" in reason

    wait_until(refused, 10, "/readyz to name the refused login")
    assert "invalid username-password pair" in reason
    assert "not-the-password" not in gateway.log() + reason

    # The persister cannot start without Redis: it exits, naming the refusal.
    with pytest.raises(RuntimeError) as exited:
        start_server(
            module="persister",
            chat_broker="redis",
            chat_redis_url=url("persister", "not-the-password", acl_redis.port),
            chat_database_url=f"sqlite:///{tmp_path / 'p.db'}",
        )
    assert "invalid username-password pair" in str(exited.value)
    assert "not-the-password" not in str(exited.value)


def secure_cluster(cluster: LocalRedisCluster, users: dict[str, list[str]]) -> str:
    """Give every node of a running cluster the shipped users, a replication user its replicas
    log in with, and a password on ``default``; returns the replication password."""
    replica_password = secrets.token_hex(16)
    for node in cluster.nodes:
        with node.client() as conn:
            conn.execute_command("ACL", "SETUSER", "replica", *REPLICA_ACL, ">" + replica_password)
            for name, rules in users.items():
                if name != "default":
                    conn.execute_command("ACL", "SETUSER", name, *rules)
            conn.config_set("masteruser", "replica")
            conn.config_set("masterauth", replica_password)
            conn.execute_command("ACL", "SETUSER", "default", *users["default"])
    return replica_password


def node_admin(port: int, password: str) -> redis.Redis:
    return redis.Redis(port=port, username="default", password=password, decode_responses=True)


async def test_gateways_and_persister_log_in_to_every_cluster_node(
    cluster: LocalRedisCluster,
    passwords: dict[str, str],
    start_server: Any,
    mysql_url: str,
    mariadb: MariaDB,
) -> None:
    # A room on every primary (read before the nodes want a password): each gateway's sharded
    # subscriber then opens a connection to each primary.
    primaries = set(cluster.primaries())
    owners: dict[int, str] = {}
    for n in range(1000):
        room = f"room{n}"
        owners.setdefault(cluster.owner_of_slot(key_slot(keys.channel(room, 48).encode())), room)
    assert set(owners) == primaries
    rooms = sorted(owners.values())
    secure_cluster(cluster, shipped_users(passwords))
    admin = passwords["REDISCLI_AUTH"]
    admins = [node_admin(node.port, admin) for node in cluster.nodes]
    # The replicas log in again as `replica` (masteruser/masterauth) after losing their link.
    for conn in admins:
        conn.client_kill_filter(_type="replica")

    def replicas_linked() -> bool:
        roles = [conn.info("replication") for conn in admins]
        replicas = [r for r in roles if r["role"] == "slave"]
        return len(replicas) == 3 and all(r["master_link_status"] == "up" for r in replicas)

    wait_until(replicas_linked, 15, "every replica to log in to its primary")

    nodes = ",".join(f"127.0.0.1:{node.port}" for node in cluster.nodes)
    gateway_password = passwords["REDIS_GATEWAY_PASSWORD"]
    gateway_url = f"redis+cluster://gateway:{gateway_password}@{nodes}"
    persister_password = passwords["REDIS_PERSISTER_PASSWORD"]
    persister_url = f"redis+cluster://persister:{persister_password}@{nodes}"
    common = {"chat_broker": "redis", "chat_database_url": mysql_url}
    persister = start_server(module="persister", chat_redis_url=persister_url, **common)
    gw1, gw2 = (
        start_server(module="gateway", chat_redis_url=gateway_url, **common) for _ in range(2)
    )
    for process in (persister, gw1, gw2):
        wait_until(partial(is_ready, process), 15, f"{process.name} to be ready")

    ann = await join(gw1, "ann", *rooms)
    bob = await join(gw2, "bob", *rooms)
    for room in rooms:
        await send_acked(ann, room, f"to {room}", f"c-{room}")
        received = await bob.expect("message", room=room, cid=f"c-{room}")
        assert received["text"] == f"to {room}"
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    for room in rooms:
        wait_until(partial(holds, mariadb, database, room, [f"to {room}"]), 30, f"{room}'s row")

    for conn, node in zip(admins, cluster.nodes, strict=True):
        assert denied([conn]) == [], node.port
        users = {c["user"] for c in conn.client_list()}
        if node.port in primaries:
            assert {"gateway", "persister"} <= users, node.port
        conn.close()


def test_cluster_urls_carry_their_credentials_to_every_node() -> None:
    client = redis_client.connect(
        "redis+cluster://gate%40way:p%3Ass@10.0.0.1:7000,10.0.0.2:7000/0", pool_size=4
    )
    assert isinstance(client, RedisCluster)
    kwargs = client.get_connection_kwargs()
    assert (kwargs["username"], kwargs["password"]) == ("gate@way", "p:ss")
    nodes = {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()}
    assert nodes == {("10.0.0.1", 7000), ("10.0.0.2", 7000)}
    for node in client.nodes_manager.startup_nodes.values():
        assert (node.connection_kwargs["username"], node.connection_kwargs["password"]) == (
            "gate@way",
            "p:ss",
        )
    # A bad URL's error names the nodes, never the password.
    with pytest.raises(ValueError, match=r"10\.0\.0\.1") as bad:
        redis_client.connect("redis+cluster://gateway:s3cret@10.0.0.1", pool_size=4)
    assert "s3cret" not in str(bad.value)
    # Without credentials nothing changes.
    plain = redis_client.connect("redis+cluster://10.0.0.1:7000", pool_size=4)
    assert isinstance(plain, RedisCluster)
    assert plain.get_connection_kwargs().get("password") is None


def log_lines(process: ChatServer, *words: str) -> list[str]:
    """The lines of the process's log that contain every one of ``words``."""
    return [line for line in process.log().splitlines() if all(w in line for w in words)]


async def test_a_wrong_password_is_one_warning_in_the_gateway_log(
    acl_redis: AclRedis, start_server: Any
) -> None:
    password = "wrong-" + secrets.token_hex(8)
    gateway = start_server(
        module="gateway",
        chat_broker="redis",
        chat_redis_url=url("gateway", password, acl_redis.port),
        chat_log_level="debug",  # every retry is a DEBUG line: they can be counted
    )
    steps = 6  # backoff steps: 0.05 s doubling, ~3 s in all

    def retried() -> bool:
        return len(log_lines(gateway, " DEBUG ", "redis-subscriber failed again")) >= steps

    wait_until(retried, 30, f"the subscriber to retry {steps} times")
    (warning,) = log_lines(gateway, " WARNING ", "redis-subscriber")
    assert warning.endswith(
        "WARNING gateway.supervisor: redis-subscriber failed: AuthenticationError: "
        "invalid username-password pair or user is disabled.; retrying"
    )
    log = gateway.log()
    assert "Traceback" not in log
    assert password not in log


def persister_run(tmp_path: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m persister`` as the tests' processes are configured, to its exit."""
    process = ChatServer(
        tmp_path / "persister",
        module="persister",
        env={"CHAT_REDIS_URL": redis_url, "CHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"},
    )
    return subprocess.run(
        process.command(),
        cwd=ROOT,
        env=process.environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_wrong_password_stops_the_persister_with_one_line(
    acl_redis: AclRedis, tmp_path: Path
) -> None:
    password = "wr@ng/" + secrets.token_hex(8)  # percent-encoded in the URL
    result = persister_run(tmp_path, url("persister", password, acl_redis.port))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"cannot start: redis at redis://persister:***@127.0.0.1:{acl_redis.port}/0: "
        "AuthenticationError: invalid username-password pair or user is disabled."
    ]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert password not in output and quote(password, safe="") not in output


def test_an_unreachable_redis_stops_the_persister_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    password = secrets.token_hex(8)
    result = persister_run(tmp_path, url("persister", password, port))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"cannot start: redis at redis://persister:***@127.0.0.1:{port}/0: ConnectionError: "
        f"Error 111 connecting to 127.0.0.1:{port}. Connection refused."
    ]
    assert password not in result.stdout + result.stderr
