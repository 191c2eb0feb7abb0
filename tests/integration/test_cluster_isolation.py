"""A primary cut off from its replica (issue 13, item 3): a message answered ``unavailable`` is
never contradicted later by another message under the same seq, in clients, Redis or MySQL.

The replica is SIGSTOPped: its connection stays open and its acknowledgements stop, as in a
partition. For up to ``min-replicas-max-lag`` (2 s in ``stack.cluster``, counted in whole
seconds) the primary still stores what the gateways send; ``WAIT`` fails, so the sender gets
``unavailable`` and nobody gets the message live, but joins and the persister read the primary
(docs/cluster.md, "Residual risks"). After that the primary refuses every write
(``NOREPLICAS``): nothing of a refused message exists anywhere. Then the failover the partition
leads to: the primary dies, the replica (without the unreplicated message) is promoted, the old
primary comes back as its replica (its copy discarded by the full resync), and the room goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from shared import keys
from shared.config import Settings
from stack.cluster import LocalRedisCluster
from tests.conftest import ChatServer, Client, MariaDB, http_get, join, send_acked, wait_until

pytestmark = pytest.mark.anyio

SHARDS = Settings().shards  # the gateways' default
FAILOVER_BOUND = 20.0  # s: node timeout 2 s + failure agreement + election (measured ~4 s)
LIMITS = {  # senders retry through a failover: keep the abuse limits out of the way
    "chat_rate_per_s": 1000,
    "chat_rate_burst": 1000,
    "chat_user_rate_per_s": 1000,
    "chat_user_rate_burst": 1000,
}


@pytest.fixture
async def client(cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    rc = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        decode_responses=True,
    )
    try:
        yield rc
    finally:
        await rc.aclose()


def room_on(cluster: LocalRedisCluster, port: int) -> str:
    """A room whose keys live on the primary at ``port``."""
    owned = next(n.slots for n in cluster.topology() if n.port == port)
    for n in range(10_000):
        slot = key_slot(keys.seq(f"iso{n}", SHARDS).encode())
        if any(lo <= slot <= hi for lo, hi in owned):
            return f"iso{n}"
    raise AssertionError("no room on that primary")


def node_log(cluster: LocalRedisCluster, port: int, room: str) -> list[tuple[int, str]]:
    """``(seq, text)`` of the room's log as the node at ``port`` holds it."""
    with cluster.node(port).client() as conn:
        entries = conn.xrange(keys.log(room, SHARDS))
    return [(int(e["seq"]), str(e["text"])) for e in (orjson.loads(f["e"]) for _, f in entries)]


def node_seq(cluster: LocalRedisCluster, port: int, room: str) -> int:
    with cluster.node(port).client() as conn:
        return int(conn.get(keys.seq(room, SHARDS)) or 0)


def fresh_ack(cluster: LocalRedisCluster, primary: int) -> bool:
    """The primary's replica acknowledged within the current second (so a write sent now is
    accepted: the primary refuses only once the ack is more than 2 whole seconds old)."""
    with cluster.node(primary).client() as conn:
        replica = conn.info("replication").get("slave0")
    return isinstance(replica, dict) and int(replica["lag"]) == 0


def signal_node(cluster: LocalRedisCluster, port: int, sig: signal.Signals) -> None:
    proc = cluster.node(port).proc
    assert proc is not None
    os.kill(proc.pid, sig)


async def joined_as(gateway: ChatServer, user: str, room: str) -> tuple[Client, dict[str, Any]]:
    """Connect and join; returns the client and its ``joined`` event."""
    client = await Client.connect(f"{gateway.ws_url}?user={user}")
    await client.expect("hello")
    await client.send(type="join", room=room)
    return client, await client.expect("joined", room=room)


async def refused(client: Client, room: str, text: str, cid: str) -> None:
    """One send, answered ``unavailable`` (never ``internal``, never an echo)."""
    await client.send(type="send", room=room, text=text, cid=cid)
    event = await client.expect("error", cid=cid)
    assert event["code"] == "unavailable", event


def history(gateway: ChatServer, room: str) -> list[tuple[int, str]]:
    status, body = http_get(f"{gateway.url}/api/rooms/{quote(room)}/messages")
    assert status == 200, body
    return [(m["seq"], m["text"]) for m in orjson.loads(body)["messages"]]


async def drain(client: Client) -> list[tuple[int, str]]:
    """Every message event the client has received so far, ``(seq, text)``."""
    seen: list[tuple[int, str]] = []
    while True:
        try:
            event = await client.next(timeout=0.5)
        except TimeoutError:
            return seen
        if event["type"] == "message":
            seen.append((event["seq"], event["text"]))


def texts_by_seq(*sources: Iterable[tuple[int, str]]) -> dict[int, set[str]]:
    by_seq: dict[int, set[str]] = defaultdict(set)
    for source in sources:
        for seq, text in source:
            by_seq[seq].add(text)
    return by_seq


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_until`` off the event loop (the test's clients keep answering pings)."""
    await asyncio.to_thread(wait_until, check, timeout, what)


async def fail_over(cluster: LocalRedisCluster, primary: int, replica: int) -> None:
    """What the partition leads to: the isolated primary is gone, its replica, without what it
    never received, is promoted, and the old primary comes back as the new one's replica (its
    own copy replaced by the full resync). Then the shard takes writes again.

    A stopped replica's connection stays open: what the primary sent it meanwhile waits in its
    socket buffer, and it would apply it on SIGCONT. A partition drops that data; so does
    SIGKILL. Restarted from its own AOF, the replica holds exactly what it had acknowledged.
    ``CLUSTER FAILOVER TAKEOVER`` then promotes it (the election would not: a replica that
    has not reached its primary since it started cannot tell how old its data is)."""
    await asyncio.to_thread(cluster.kill, primary)
    await asyncio.to_thread(cluster.kill, replica)  # still stopped: its unread input is lost
    await asyncio.to_thread(cluster.restart, replica)
    await asyncio.to_thread(cluster.node(replica).call, "CLUSTER", "FAILOVER", "TAKEOVER")
    await until(lambda: replica in cluster.primaries(), FAILOVER_BOUND, "the replica's promotion")
    await asyncio.to_thread(cluster.restart, primary)
    await until(cluster.healthy, FAILOVER_BOUND, "the old primary back as a replica in sync")
    assert cluster.replica_of(replica) == primary


async def test_an_isolated_primary_refuses_writes_and_no_seq_is_issued_twice(
    cluster: LocalRedisCluster,
    client: RedisCluster,
    mariadb: MariaDB,
    mysql_url: str,
    start_server: Any,
    start_gateways_on: Any,
) -> None:
    database = mysql_url.rsplit("/", 1)[1].split("?")[0]
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    assert replica is not None
    room = room_on(cluster, primary)
    # The persister first: it creates the tables the gateways verify seqs against.
    start_server(module="persister", chat_redis_url=cluster.url, chat_database_url=mysql_url)
    g1, g2 = start_gateways_on(cluster.url, 2, chat_database_url=mysql_url, **LIMITS)
    alice = await join(g1, "alice", room)
    alice2 = await join(g2, "alice", room)  # alice again, in another tab, on the other gateway
    bob = await join(g2, "bob", room)
    acked = [await send_acked(alice, room, f"before {n}", cid=f"b{n}") for n in range(3)]
    assert [m["seq"] for m in acked] == [1, 2, 3]

    await until(lambda: fresh_ack(cluster, primary), 5, "a fresh replica ack")
    signal_node(cluster, replica, signal.SIGSTOP)
    try:
        # Within the lag: the primary stores the message, WAIT fails, the sender is refused.
        await refused(alice, room, "unreplicated", "u")
        assert node_log(cluster, primary, room)[-1] == (4, "unreplicated")
        # Her resend from the other tab is not acknowledged either. The cid is known there, so
        # the script writes nothing, and that gateway's connections wrote nothing since before
        # the message: on a Redis where only a propagated write moves a connection's
        # WAIT offset, a WAIT alone would count the replica (the gateway rewrites the cid key
        # and waits for that write; Redis 7.0, here, moves the offset on any command).
        await refused(alice2, room, "unreplicated", "u")
        # Joins read the primary: dave (on the other gateway) is shown it.
        dave, joined = await joined_as(g2, "dave", room)
        assert (4, "unreplicated") in [(m["seq"], m["text"]) for m in joined["messages"]]

        # Past the lag the primary refuses every write: nothing of the message exists.
        await until(lambda: cluster.node(primary).good_replicas() == 0, 10, "the refusal")
        await refused(alice, room, "refused", "r")
        await refused(alice2, room, "unreplicated", "u")  # a resend too
        assert node_seq(cluster, primary, room) == 4
        window = node_log(cluster, primary, room)
        assert window == [*((m["seq"], m["text"]) for m in acked), (4, "unreplicated")]
        for gateway in (g1, g2):  # history reads the primary's log
            assert "refused" not in {text for _, text in history(gateway, room)}

        await fail_over(cluster, primary, replica)
    finally:
        if cluster.node(replica).running:
            signal_node(cluster, replica, signal.SIGCONT)

    # The promoted node never had seq 4: it is not issued again, whichever gateway verifies
    # the room first (bob's: the persister stored seq 4 from the old primary).
    after = [await send_acked(bob, room, "after 0", cid="a0")]
    after.append(await send_acked(alice, room, "after 1", cid="a1"))
    after.append(await send_acked(alice2, room, "unreplicated", cid="u"))  # a new seq now
    assert all(m["seq"] > 4 for m in after), after
    assert len({m["seq"] for m in after}) == 3

    def rows(table: str) -> list[tuple[int, str]]:
        sql = f"SELECT seq, content FROM {table} WHERE room_id=%s ORDER BY seq"
        return [(int(s), str(c)) for s, c in mariadb.query(database, sql, room)]

    last = max(m["seq"] for m in after)
    await until(lambda: any(seq == last for seq, _ in rows("message")), 30, "the rows")
    stored, conflicts = rows("message"), rows("message_conflict")
    logged = [
        (int(e["seq"]), str(e["text"]))
        for e in (orjson.loads(f["e"]) for _, f in await client.xrange(keys.log(room, SHARDS)))
    ]
    clients = [await drain(c) for c in (alice, bob, dave, alice2)]
    shown = [(m["seq"], m["text"]) for m in joined["messages"]]
    sources = [window, stored, conflicts, logged, shown, *clients]
    assert all(len(texts) == 1 for texts in texts_by_seq(*sources).values()), sources
    assert conflicts == []
    assert "refused" not in {text for source in sources for _, text in source}
    # Every acknowledged message is in the store and the new primary's log.
    expected = {(m["seq"], m["text"]) for m in acked + after}
    assert expected <= set(stored) and expected <= set(logged)


async def test_the_gateway_that_was_refused_a_seq_never_reissues_it_after_failover(
    cluster: LocalRedisCluster, start_gateways_on: Any
) -> None:
    """Without a persister to store it, only the gateway knows the seq it was refused (a join
    showed it): after the failover it verifies the room past that seq."""
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    assert replica is not None
    room = room_on(cluster, primary)
    (gateway,) = start_gateways_on(cluster.url, 1, **LIMITS)
    alice = await join(gateway, "alice", room)
    acked = [await send_acked(alice, room, f"before {n}", cid=f"b{n}") for n in range(3)]

    await until(lambda: fresh_ack(cluster, primary), 5, "a fresh replica ack")
    signal_node(cluster, replica, signal.SIGSTOP)
    try:
        await refused(alice, room, "unreplicated", "u")
        dave, joined = await joined_as(gateway, "dave", room)
        shown = [(m["seq"], m["text"]) for m in joined["messages"]]
        assert shown[-1] == (4, "unreplicated")
        await fail_over(cluster, primary, replica)
    finally:
        if cluster.node(replica).running:
            signal_node(cluster, replica, signal.SIGCONT)

    after = await send_acked(alice, room, "after", cid="a")
    assert after["seq"] == 5  # 4 is burned: dave was shown another message under it
    assert (await dave.expect("message", room=room, cid="a"))["seq"] == 5
    assert [seq for seq, _ in node_log(cluster, replica, room)] == [1, 2, 3, 5]
    assert [m["seq"] for m in acked] == [1, 2, 3]
