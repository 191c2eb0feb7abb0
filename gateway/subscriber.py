"""The Redis broker's subscriber connections: where room events arrive from.

Two implementations behind one interface, chosen by ``CHAT_REDIS_URL``:

- :class:`ChannelSubscriber`: one pub/sub connection to a single Redis (SUBSCRIBE/PUBLISH).
- :class:`ShardedSubscriber`: a Redis Cluster's sharded pub/sub (SSUBSCRIBE/SPUBLISH). A shard
  channel lives on the primary owning its slot, so there is one connection, read by one owned
  task, per primary that owns a subscribed room.

Either one is a unit that works or has failed: :meth:`run` returns only by raising, and the broker
then closes it, builds a new one (which re-resolves the cluster's slot map), resubscribes and
replays each room's log by seq. A topology change (failover, slot migration) is handled by that
same path as a Redis restart.

Reading. A connection is made, logged in and closed by redis-py (address, credentials, TLS,
RESP version: the client's settings), and commands go out through it; but the pushes are read
straight from its stream and parsed by hiredis, the parser redis-py itself uses. redis-py's
``PubSub.get_message`` spends four layers per message (parse, retry, read, a timeout scope) and
builds a dict for each: on a gateway of many small rooms that was about a seventh of its CPU
(docs/benchmarks.md). A connection is never reconnected behind our back: a lost one fails the
link, and the broker's recovery path takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from shared import redis_client

OnMessage = Callable[[str, str], Awaitable[None]]  # (channel, data)

CONFIRM_TIMEOUT_S = 5.0
PING_AFTER_S = 5.0  # a silent connection is pinged after this long
DEAD_AFTER_S = 15.0  # and given up on if it stays silent this long
TICK_S = 1.0  # how often a silent connection is looked at
READ_BYTES = 65536


class TopologyChanged(ConnectionError):
    """Redis dropped one of our shard subscriptions: its slot moved to another node."""


class Subscriber(Protocol):
    """Subscriptions to room channels, delivering each message to ``on_message``."""

    async def open(self, channels: list[str]) -> None:
        """Connect and subscribe to ``channels``; returns once Redis confirmed every one."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe to one more channel; returns once Redis confirmed it."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    async def run(self) -> None:
        """Deliver messages until a connection fails; raises that failure."""

    async def close(self) -> None:
        """Close every connection and stop every task (idempotent)."""


class _Link:
    """One pub/sub connection: its reader, confirmation futures and the silent-connection
    watchdog."""

    def __init__(self, redis: Redis, on_message: OnMessage, sharded: bool) -> None:
        # The client's settings, but the link's own connection: never lent by a pool.
        self.conn: AbstractConnection = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        self.on_message = on_message
        # The commands and the pushes answering them share their names (Redis takes commands
        # in any case): ssubscribe, smessage... on a cluster's sharded pub/sub.
        s = "s" if sharded else ""
        self.data_type, self.subscribe_type, self.unsubscribe_type = (
            f"{s}message",
            f"{s}subscribe",
            f"{s}unsubscribe",
        )
        self.wanted: set[str] = set()  # channels we asked for and have not dropped
        self._leaving: Counter[str] = Counter()  # our unsubscribes, not yet confirmed
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._stream: asyncio.StreamReader | None = None
        self._parser = hiredis.Reader(encoding="utf-8")

    async def connect(self) -> None:
        """Open the connection (redis-py's handshake: login, database, RESP version)."""
        await self.conn.connect()  # type: ignore[no-untyped-call]
        # redis-py's parser read only the handshake's replies: nothing of ours is buffered.
        self._stream = self.conn._reader  # see the module docstring
        if self._stream is None:
            raise ConnectionError("redis subscriber connection has no stream")

    async def send(self, *command: str) -> None:
        """Send one command; a dropped connection fails (it is never silently reopened)."""
        if not self.conn.is_connected:
            raise ConnectionError("redis subscriber connection closed")
        await self.conn.send_command(*command, check_health=False)

    async def subscribe(self, channels: list[str]) -> None:
        """Send SUBSCRIBE (SSUBSCRIBE: ``channels`` of one slot)."""
        await self.send(self.subscribe_type, *channels)

    def expect(self, channels: list[str]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        self.wanted.update(channels)
        futures = []
        for channel in channels:
            self._confirm[channel] = loop.create_future()
            futures.append(self._confirm[channel])
        return futures

    async def confirmed(self, futures: list[asyncio.Future[None]]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), CONFIRM_TIMEOUT_S)
        except TimeoutError as exc:
            raise TimeoutError("no subscribe confirmation from redis") from exc

    async def read(self) -> None:
        """Hand every push to its handler until the connection fails (raises why)."""
        stream, parser = self._stream, self._parser
        if stream is None:
            raise ConnectionError("redis subscriber connection is not open")
        quiet_since = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    data = await stream.read(READ_BYTES)
            except TimeoutError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancel that landed as a read timed out (here, or in redis-py's connect
                    # under its own timeout) was taken for the timeout: honour it, or the task
                    # would never stop (and shutdown would hang).
                    raise asyncio.CancelledError from None
                # A silent connection may be a dead one: ping it, and give up if nothing comes.
                now = time.monotonic()
                if now - quiet_since > DEAD_AFTER_S:
                    raise TimeoutError("redis subscriber connection is silent") from None
                if now - quiet_since > PING_AFTER_S:
                    await self.send("PING")
                continue
            if not data:
                raise ConnectionError("redis closed the subscriber connection")
            quiet_since = time.monotonic()
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                await self._handle(reply)

    async def _handle(self, reply: Any) -> None:
        # A push is [kind, channel, ...] (a list; RESP3's hiredis.PushNotification is one too).
        # Anything else is a PING's answer: it only proved the connection alive.
        if isinstance(reply, hiredis.ReplyError):
            raise ConnectionError(f"redis subscriber: {reply}")
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel = reply[0], reply[1]
        if kind == self.data_type:
            await self.on_message(channel, reply[2])
        elif kind == self.subscribe_type:
            future = self._confirm.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == self.unsubscribe_type:
            if self._leaving[channel] > 0:
                self._leaving[channel] -= 1  # ours (maybe before a re-subscribe)
                if not self._leaving[channel]:
                    del self._leaving[channel]
            elif channel in self.wanted:
                # Not asked for: Redis Cluster drops the shard subscriptions of a slot that
                # moved to another node.
                raise TopologyChanged(f"redis dropped the subscription to {channel}")

    async def unsubscribe(self, channel: str) -> None:
        self.wanted.discard(channel)
        self._leaving[channel] += 1
        await self.send(self.unsubscribe_type, channel)

    async def close(self) -> None:
        # A subscribe still waiting for its confirmation fails like a lost connection (a
        # ConnectionError the broker answers as ``unavailable``), never as a cancellation: that
        # would look like the joining client's own task being cancelled and drop its socket.
        closed = ConnectionError("redis subscriber connection closed")
        for future in [*self._confirm.values(), self.ready]:
            if not future.done():
                future.set_exception(closed)
                future.exception()  # retrieved: nobody may be waiting
        with contextlib.suppress(Exception):
            await self.conn.disconnect()


class ChannelSubscriber:
    """Plain pub/sub on one Redis: one connection, read by :meth:`run` itself."""

    def __init__(self, redis: Redis, on_message: OnMessage) -> None:
        self.link = _Link(redis, on_message, sharded=False)

    async def open(self, channels: list[str]) -> None:
        await self.link.connect()
        if channels:
            futures = self.link.expect(channels)
            await self.link.subscribe(channels)
            await self._confirm_while_reading(futures)

    async def _confirm_while_reading(self, futures: list[asyncio.Future[None]]) -> None:
        # Before run() starts, nobody reads the connection: read it here until confirmed.
        reader = asyncio.create_task(self.link.read())
        confirming = asyncio.create_task(self.link.confirmed(futures))
        try:
            done, _ = await asyncio.wait([reader, confirming], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the reader's or the confirmation's failure
        finally:
            # Both are ours: neither may outlive this call (nor leave an unretrieved error).
            for task in (reader, confirming):
                task.cancel()
            await asyncio.gather(reader, confirming, return_exceptions=True)

    async def subscribe(self, channel: str) -> None:
        futures = self.link.expect([channel])
        await self.link.subscribe([channel])
        await self.link.confirmed(futures)

    async def unsubscribe(self, channel: str) -> None:
        await self.link.unsubscribe(channel)

    async def run(self) -> None:
        await self.link.read()

    async def close(self) -> None:
        await self.link.close()


class ShardedSubscriber:
    """Sharded pub/sub on a Redis Cluster: one connection and one reader task per primary."""

    def __init__(self, cluster: RedisCluster, on_message: OnMessage) -> None:
        self.cluster = cluster
        self.on_message = on_message
        self._links: dict[str, tuple[_Link, Redis, asyncio.Task[None]]] = {}
        self._channel_node: dict[str, str] = {}
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def open(self, channels: list[str]) -> None:
        await self.cluster.initialize()  # the first time: slot map and command table
        # Re-read the slot map: after a failover the old one names a dead primary.
        await self.cluster.nodes_manager.initialize()
        by_node: dict[str, list[str]] = {}
        for channel in channels:
            by_node.setdefault(self._node_of(channel), []).append(channel)
        await asyncio.gather(*(self._subscribe(node, group) for node, group in by_node.items()))

    async def subscribe(self, channel: str) -> None:
        await self._subscribe(self._node_of(channel), [channel])

    async def _subscribe(self, node: str, channels: list[str]) -> None:
        link = self._links[node][0]
        await asyncio.wait_for(asyncio.shield(link.ready), CONFIRM_TIMEOUT_S)
        futures = link.expect(channels)
        # One SSUBSCRIBE per slot: a node owns many slots, and one command may not span them.
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        for group in by_slot.values():
            await link.subscribe(group)
        await link.confirmed(futures)

    def _node_of(self, channel: str) -> str:
        """The name of the primary owning ``channel``, with a link (connection, reader) to it."""
        node = self.cluster.get_node_from_key(channel)
        if node is None:
            raise ConnectionError(f"no node owns {channel}")
        self._channel_node[channel] = node.name
        if node.name not in self._links:
            # No silent reconnects: a reconnect would resubscribe without replaying the gap.
            client = redis_client.node_client(
                self.cluster,
                node.host,
                int(node.port),
                decode_responses=True,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )
            link = _Link(client, self.on_message, sharded=True)
            task = asyncio.create_task(self._read(link), name=f"redis-shard-subscriber-{node.name}")
            self._links[node.name] = (link, client, task)
        return str(node.name)

    async def _read(self, link: _Link) -> None:
        try:
            await link.connect()
            link.ready.set_result(None)
            await link.read()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not link.ready.done():
                link.ready.set_exception(exc)
                link.ready.exception()  # retrieved: the failure is reported through run()
            if not self._failed.done():
                self._failed.set_exception(exc)

    async def unsubscribe(self, channel: str) -> None:
        name = self._channel_node.pop(channel, None)
        if name is not None and name in self._links:
            await self._links[name][0].unsubscribe(channel)

    async def run(self) -> None:
        await asyncio.shield(self._failed)

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        for _, _, task in links:
            task.cancel()
        for link, client, task in links:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await link.close()
            with contextlib.suppress(Exception):
                await client.aclose()
        if not self._failed.done():
            self._failed.cancel()
        else:
            self._failed.exception()  # retrieved


def subscriber_for(redis: Any, on_message: OnMessage) -> Subscriber:
    """The subscriber matching the client: sharded for a cluster, plain for one Redis."""
    if isinstance(redis, RedisCluster):
        return ShardedSubscriber(redis, on_message)
    return ChannelSubscriber(redis, on_message)
