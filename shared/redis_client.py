"""Connecting to Redis: one server (``redis://``) or a Redis Cluster (``redis+cluster://``).

``CHAT_REDIS_URL=redis+cluster://host:port,host:port`` names any subset of the cluster's nodes;
the client discovers the rest and routes every command by its key's slot. The gateway and the
persister run unchanged against either: only this factory and the few places that must know
(sharded pub/sub, replicated acknowledgements, one stream per read) look at the mode.

Credentials go in the URL's user part, percent-encoded, in either form:
``redis://user:password@host:6379/0`` or ``redis+cluster://user:password@host:port,host:port``.
The cluster client logs in with them on every node it discovers; :func:`node_client` gives the
connections opened outside it (the sharded subscriber's) the same login.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from shared.errors import Unavailable

CLUSTER_SCHEME = "redis+cluster://"

AnyRedis = Redis | RedisCluster

# What a command raises when Redis cannot serve it right now. ``RedisClusterException`` (e.g.
# ``SlotNotCoveredError`` while no node answers) is not a ``RedisError``, but means the same.
REDIS_DOWN = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
# The error a primary answers a write with while fewer replicas than min-replicas-to-write are
# in sync (Redis adds the script's name when a script's write is refused).
NOREPLICAS = "NOREPLICAS"


@contextlib.contextmanager
def unavailable(what: str = "redis") -> Iterator[None]:
    """Turn Redis being unreachable inside the block into :class:`Unavailable` (clients retry)."""
    try:
        yield
    except REDIS_DOWN as exc:
        raise Unavailable(f"{what}: {exc}") from exc


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster."""
    return url.startswith(CLUSTER_SCHEME)


def _cluster_location(url: str) -> tuple[str, str]:
    """``(user part, node list)`` of a ``redis+cluster://[user:password@]h:p,h:p[/db]`` URL."""
    location = url.removeprefix(CLUSTER_SCHEME).split("/", 1)[0]
    user_part, _, nodes = location.rpartition("@")  # a host list holds no "@"
    return user_part, nodes


def cluster_credentials(url: str) -> dict[str, Any]:
    """``username``/``password`` of a cluster URL's user part (percent-decoded), or nothing.

    ``:password@`` alone logs in as ``default`` (a ``requirepass`` server)."""
    user_part, _ = _cluster_location(url)
    if not user_part:
        return {}
    username, has_password, password = user_part.partition(":")
    credentials: dict[str, Any] = {"username": unquote(username)} if username else {}
    if has_password:
        credentials["password"] = unquote(password)
    return credentials


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` seed nodes of a ``redis+cluster://[user:password@]h:p,h:p`` URL."""
    _, rest = _cluster_location(url)
    nodes = []
    for part in rest.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            # The node list, not the URL: that may hold a password.
            raise ValueError(f"bad cluster node {part!r} in {rest!r} (want host:port)")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def connect(url: str, *, pool_size: int, socket_timeout: float | None = 5) -> AnyRedis:
    """A client for ``url`` that never retries a command on its own.

    A publish retried after a lost reply could publish twice, so retries are the caller's
    decision (clients resend with the same ``cid``). Connections are bounded: ``pool_size`` per
    server (per node in a cluster); on a single server callers queue for a free one.
    """
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2,
    }
    if is_cluster(url):
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
            max_connections=pool_size,
            retry=Retry(NoBackoff(), 0),
            **cluster_credentials(url),
            **common,
        )
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=10, retry=Retry(NoBackoff(), 0), **common
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def node_client(cluster: RedisCluster, host: str, port: int, **options: Any) -> Redis:
    """A client of one node of ``cluster`` that logs in as the cluster client does."""
    login = cluster.get_connection_kwargs()
    return Redis(
        host=host,
        port=port,
        username=login.get("username"),
        password=login.get("password"),
        credential_provider=login.get("credential_provider"),
        **options,
    )


# The password of a URL (``scheme://user:password@host``): from the first ":" after the user
# to the last "@" before a blank, so that one with a "/" or "@" left unencoded is masked too.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]*):\S*@")


def masked(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) on one line, with the password of every URL
    in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", " ".join(text.split()))
