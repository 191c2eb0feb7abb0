"""A local Redis Cluster (issue 8): N redis-server processes in cluster mode on loopback ports,
joined with ``redis-cli --cluster create``, awaited until every node agrees the cluster is ok.

Same style as ``stack.processes``: private directories, free ports, readiness polled, clean stop.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import redis

from stack.processes import RedisServer, binary, die_with_parent, wait_until

SLOTS = 16384
BUS_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(taken: set[int]) -> int:
    """A port free with its bus port (+10000), both below the usual ephemeral range (32768+)
    so that no outgoing connection takes them between now and the server's bind."""
    for _ in range(1000):
        port = random.randint(10000, 22000)
        if port in taken or port + BUS_OFFSET in taken:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            taken.update((port, port + BUS_OFFSET))
            return port
    raise RuntimeError("no free port pair for a cluster node")


class NodeInfo(NamedTuple):
    """One line of CLUSTER NODES."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # the primary's id for a replica, else None
    slots: tuple[tuple[int, int], ...]  # owned slot ranges (inclusive)

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags


def parse_nodes(text: str) -> list[NodeInfo]:
    """Parse the CLUSTER NODES reply (``<id> <ip:port@bus> <flags> <primary> ... <slots>``)."""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being imported/migrated
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            NodeInfo(
                id=parts[0],
                port=port,
                flags=frozenset(parts[2].split(",")),
                primary_id=None if parts[3] == "-" else parts[3],
                slots=tuple(slots),
            )
        )
    return nodes


# An isolated primary refuses writes (docs/cluster.md, "Residual risks"): a primary accepts a
# write command only while at least MIN_REPLICAS_TO_WRITE replicas acknowledged its stream no
# more than MIN_REPLICAS_MAX_LAG_S seconds ago (replicas acknowledge every second; Redis counts
# whole seconds, so a primary refuses 2-4 s after its last replica went silent, at once when
# the replica's connection closes). A refused script writes nothing: ``NOREPLICAS``.
MIN_REPLICAS_TO_WRITE = 1
MIN_REPLICAS_MAX_LAG_S = 2


@dataclass
class ClusterNode(RedisServer):
    """One redis-server in cluster mode; its ``dir`` holds its AOF and ``nodes.conf``."""

    name = "redis-cluster"
    node_timeout_ms: int = 2000
    min_replicas_to_write: int = MIN_REPLICAS_TO_WRITE
    min_replicas_max_lag_s: int = MIN_REPLICAS_MAX_LAG_S

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica's first full sync starts at once (the default waits 5 s for others).
            "--repl-diskless-sync-delay", "0",
            # Every node: any replica may be promoted.
            "--min-replicas-to-write", str(self.min_replicas_to_write),
            "--min-replicas-max-lag", str(self.min_replicas_max_lag_s),
        ]  # fmt: skip

    def good_replicas(self) -> int | None:
        """How many replicas this node counts for ``min-replicas-to-write`` (None: a replica,
        or the setting is off)."""
        with self.client() as conn:
            info = conn.info("replication")
        good = info.get("min_slaves_good_slaves")
        return None if info.get("role") != "master" or good is None else int(good)

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, decode_responses=True
        )

    def call(self, *args: str | int) -> str:
        """Run one command on this node (a fresh connection: nodes come and go in tests)."""
        with self.client() as conn:
            reply = conn.execute_command(*args)
        return reply if isinstance(reply, str) else str(reply)


@dataclass
class LocalRedisCluster:
    """``size`` nodes, ``replicas`` replicas per primary (default: 3 primaries, 3 replicas)."""

    dir: Path
    size: int = 6
    replicas: int = 1
    node_timeout_ms: int = 2000
    min_replicas_to_write: int = MIN_REPLICAS_TO_WRITE  # 0: an isolated primary keeps writing
    min_replicas_max_lag_s: int = MIN_REPLICAS_MAX_LAG_S
    ready_timeout: float = 30.0
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """The ``CHAT_REDIS_URL`` of the cluster: ``redis+cluster://`` and every node."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def start(self) -> LocalRedisCluster:
        """Start an empty cluster: ports are new each time, so an earlier run's node directories
        (``nodes.conf`` names the old ports) cannot be reused; rooms continue from the database."""
        shutil.rmtree(self.dir, ignore_errors=True)
        taken: set[int] = set()
        self.nodes = []
        try:
            for _ in range(self.size):
                port = free_cluster_port(taken)
                node = ClusterNode(
                    self.dir / str(port),
                    port,
                    node_timeout_ms=self.node_timeout_ms,
                    min_replicas_to_write=self.min_replicas_to_write,
                    min_replicas_max_lag_s=self.min_replicas_max_lag_s,
                )
                self.nodes.append(node)
                node.start()
            result = subprocess.run(
                [
                    binary("redis-cli", "/usr/bin/redis-cli"), "--cluster", "create",
                    *(f"{host}:{port}" for host, port in self.startup_nodes),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes",
                ],
                capture_output=True, text=True, timeout=self.ready_timeout,
                preexec_fn=die_with_parent(),
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}")
            wait_until(self.healthy, self.ready_timeout, "the cluster to be ok on every node")
        except BaseException:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        """For a freshly created cluster, on every node: ``cluster_state:ok``, all slots ok, every
        node known with its role, every replica's link to its primary up (so it can be promoted),
        every primary counting enough replicas in sync to accept writes (``min-replicas``).
        """
        running = [node for node in self.nodes if node.running]
        try:
            for node in running:
                info = self.cluster_info(node.port)
                if info.get("cluster_state") != "ok":
                    return False
                if info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                if int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                    return False
                # Gossip has told this node every other node's role (right after the create,
                # a node may still see a replica as an empty primary).
                nodes = parse_nodes(node.call("CLUSTER", "NODES"))
                if len(nodes) != len(self.nodes) or any(
                    n.failed or "handshake" in n.flags or "noaddr" in n.flags for n in nodes
                ):
                    return False
                primaries = [n for n in nodes if n.is_primary]
                if len(primaries) != self.size // (self.replicas + 1):
                    return False
                if not all(n.slots for n in primaries):
                    return False
                me = next(n for n in nodes if "myself" in n.flags)
                with node.client() as conn:
                    replication = conn.info("replication")
                if not me.is_primary and replication.get("master_link_status") != "up":
                    return False
                good = replication.get("min_slaves_good_slaves")
                if me.is_primary and good is not None and int(good) < self.min_replicas_to_write:
                    return False
        except (redis.RedisError, OSError):
            return False
        return True

    def cluster_info(self, port: int) -> dict[str, str]:
        text = self.node(port).call("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def topology(self) -> list[NodeInfo]:
        """CLUSTER NODES as seen by the first running node."""
        for node in self.nodes:
            if node.running:
                try:
                    return parse_nodes(node.call("CLUSTER", "NODES"))
                except (redis.RedisError, OSError):
                    continue
        raise RuntimeError("no cluster node is reachable")

    def primaries(self) -> list[int]:
        """Ports of the primaries that own slots and are not failed, by port."""
        return sorted(n.port for n in self.topology() if n.is_primary and n.slots and not n.failed)

    def replica_of(self, primary: int) -> int | None:
        """The port of a (non-failed) replica of the primary on ``primary``, if any."""
        nodes = self.topology()
        pid = next(n.id for n in nodes if n.port == primary)
        return next((n.port for n in nodes if n.primary_id == pid and not n.failed), None)

    def owner_of_slot(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        for n in self.topology():
            if n.is_primary and not n.failed and any(lo <= slot <= hi for lo, hi in n.slots):
                return n.port
        raise LookupError(f"slot {slot} is not covered")

    def kill(self, port: int, sig: int = signal.SIGKILL) -> int:
        """Signal one node (SIGKILL: a crash) and wait for it; returns its exit code."""
        return self.node(port).stop(sig, timeout=10)

    def migrate_slot(self, slot: int, target: int) -> None:
        """Move ``slot`` and its keys to the primary on port ``target``, the way
        ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE the keys in batches,
        then SETSLOT NODE on every primary."""
        source = self.node(self.owner_of_slot(slot))
        destination = self.node(target)
        source_id, target_id = source.call("CLUSTER", "MYID"), destination.call("CLUSTER", "MYID")
        destination.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        with source.client(timeout=10) as conn:
            while names := conn.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                conn.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *names)
        for port in [target, source.port, *self.primaries()]:
            self.node(port).call("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def restart(self, port: int) -> None:
        """Start a stopped node again; it rejoins from its ``nodes.conf`` (a killed primary
        comes back as a replica of the node that replaced it)."""
        self.node(port).start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(timeout=10)
