"""The node: composes the hub, the broker, presence and the store, and carries out client
commands (one method per command, as centrifuge's ``handleSubscribe``, ``handleHistory``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar, assert_never

from gateway.admission import Admission
from gateway.broker import Broker
from gateway.connection import Connection
from gateway.hub import Hub
from gateway.limits import TokenBucket
from gateway.presence import PresenceManager
from gateway.supervisor import Supervised
from shared import errors, events
from shared.config import Settings
from shared.errors import ProtocolError, Unavailable
from shared.events import Message
from shared.metrics import GatewayMetrics, asyncio_task_count
from shared.store import Store

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)


class UserLimits:
    """One user's connections on this gateway and the rates they share."""

    __slots__ = ("connections", "joins", "sends")

    def __init__(self, settings: Settings) -> None:
        self.connections = 0
        self.sends = TokenBucket(settings.user_rate_per_s, settings.user_rate_burst)
        self.joins = TokenBucket(settings.user_join_rate_per_s, settings.user_join_rate_burst)


class Node:
    """One gateway's rooms and connections; every command goes through here."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        presence: PresenceManager,
        store: Store | None,
        metrics: GatewayMetrics,
        *,
        writes_store: bool = False,
    ) -> None:
        self.settings = settings
        self.writes_store = writes_store  # readiness then includes the store
        self.broker = broker
        self.presence = presence
        self.store = store
        self.metrics = metrics
        self.hub = Hub(settings.coalesce_ms / 1000, metrics, settings.coalesce_max_ms / 1000)
        self.admission = Admission(settings)
        self._users: dict[str, UserLimits] = {}  # the users with a connection here
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribing: dict[str, asyncio.Future[None]] = {}  # room → first join's subscribe
        metrics.broker_up.set_function(lambda: 1.0 if broker.healthy() else 0.0)
        metrics.asyncio_tasks.set_function(asyncio_task_count)

    def tasks(self) -> list[Supervised]:
        """Every background task that must live: the broker's and presence's."""
        return [*self.broker.tasks(), *self.presence.tasks()]

    def stuck(self) -> list[str]:
        """Tasks down for longer than ``CHAT_UNHEALTHY_AFTER_S`` (liveness fails on any)."""
        limit = self.settings.unhealthy_after_s
        return [task.status() for task in self.tasks() if task.down_for() > limit]

    async def start(self) -> None:
        """Start the broker (its events reach the hub) and presence."""
        await self.broker.start(self.hub.deliver)
        await self.presence.start()

    async def drain(self, code: int = errors.GOING_AWAY) -> None:
        """Close every connection with ``code`` once its pending events are sent."""
        self.draining = True
        conns = self.hub.connections()
        for conn in conns:
            conn.close(code, "gateway shutting down")
        await asyncio.gather(*(c.closed(self.settings.shutdown_grace_s) for c in conns))

    async def close(self) -> None:
        """Stop the hub, presence and the broker."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.stop()
        await self.presence.close()
        await self.broker.close()

    # -- connection lifecycle -------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """Register a new connection."""
        self.hub.attach(conn)
        limits = self._users.get(conn.user)
        if limits is None:
            limits = self._users[conn.user] = UserLimits(self.settings)
        limits.connections += 1

    async def detach(self, conn: Connection) -> None:
        """Forget a closed connection: leave its rooms, stop its writer."""
        await self._leave_all(conn)
        self.hub.detach(conn)
        limits = self._users.get(conn.user)
        if limits is not None:
            limits.connections -= 1
            if not limits.connections:
                del self._users[conn.user]
        await conn.stop()

    # -- commands -------------------------------------------------------------------------

    async def handle(self, conn: Connection, cmd: events.Command) -> None:
        """Carry out one command; refusals come back as ``error`` events."""
        try:
            match cmd:
                case events.Send():
                    await self.send(conn, cmd)
                case events.Join():
                    await self.join(conn, cmd.room, cmd.since)
                case events.Leave():
                    await self.leave(conn, cmd.room)
                case events.History():
                    await self.send_history(conn, cmd)
                case events.Ping():
                    conn.push(events.PONG)
                case _:
                    assert_never(cmd)
        except ProtocolError as exc:
            conn.send_error(exc)
        except Unavailable as exc:
            kind = type(cmd).__name__.lower()
            log.warning("%s from %s unavailable (ref %s): %s", kind, conn.user, exc.ref, exc)
            conn.send_error(
                ProtocolError(
                    errors.UNAVAILABLE,
                    exc.public,
                    cid=getattr(cmd, "cid", None),
                    room=getattr(cmd, "room", None),
                )
            )

    async def leave(self, conn: Connection, room: str) -> None:
        """Leave a joined room."""
        if room not in conn.rooms:
            raise ProtocolError(errors.NOT_JOINED, "not in this room", room=room)
        await self._leave(conn, room)
        left: events.Left = {"type": "left", "room": room}
        conn.push(events.encode(left))

    async def send_history(self, conn: Connection, cmd: events.History) -> None:
        """A page of older messages of a room the token allows (joined or not)."""
        if not conn.identity.may_join(cmd.room):
            raise ProtocolError(
                errors.FORBIDDEN_ROOM, "the token does not allow this room", room=cmd.room
            )
        messages, more = await self.history(
            cmd.room, cmd.before, cmd.limit or self.settings.history_limit
        )
        page: events.HistoryPage = {
            "type": "history",
            "room": cmd.room,
            "messages": messages,
            "more": more,
        }
        conn.push(events.encode(page))

    async def send(self, conn: Connection, cmd: events.Send) -> None:
        """Publish a message to a joined room, within the connection's rate."""
        if cmd.room not in conn.rooms:
            raise ProtocolError(
                errors.NOT_JOINED, "join the room first", cid=cmd.cid, room=cmd.room
            )
        if not conn.bucket.take() or not self._users[conn.user].sends.take():
            conn.strikes += 1
            if conn.strikes >= self.settings.rate_strikes:
                conn.close(errors.RATE_LIMIT_EXCEEDED, "send rate exceeded")
                return
            raise ProtocolError(
                errors.RATE_LIMITED,
                f"at most {self.settings.rate_per_s:g} messages/s per connection and "
                f"{self.settings.user_rate_per_s:g} per user",
                cid=cmd.cid,
                room=cmd.room,
            )
        conn.strikes = 0
        if not self.broker.healthy():
            # Accepted now, the sender's echo could not come back: refuse, the client retries.
            raise Unavailable("not receiving room events right now")
        published = await self.broker.publish(cmd.room, conn.user, cmd.text, cmd.cid)
        if published.duplicate:
            # A resend: the sender gets the original back; nothing new went to the room.
            conn.push(events.encode(published.message))
        else:
            self.metrics.messages_in.inc()

    async def join(self, conn: Connection, room: str, since: int | None) -> None:
        """Join (or, when already joined, recover from ``since``) without a gap."""
        rejoin = room in conn.rooms
        if not rejoin:
            if conn.room_count >= self.settings.max_rooms:
                raise ProtocolError(
                    errors.TOO_MANY_ROOMS, f"at most {self.settings.max_rooms} rooms", room=room
                )
            if not conn.identity.may_join(room):
                raise ProtocolError(
                    errors.FORBIDDEN_ROOM, "the token does not allow this room", room=room
                )
        if not conn.joins.take() or not self._users[conn.user].joins.take():
            # Each join may create a room's state in Redis: a client must not mint them fast.
            raise ProtocolError(
                errors.RATE_LIMITED,
                f"at most {self.settings.join_rate_per_s:g} joins/s per connection and "
                f"{self.settings.user_join_rate_per_s:g} per user",
                room=room,
            )
        conn.begin_join(room)
        present = False  # this join counted the user as online in the room
        try:
            if not rejoin:
                # Subscribed before reading the log: nothing published meanwhile is missed.
                # Joins racing the room's first one wait for its subscription too.
                if self.hub.add(room, conn):
                    await self._subscribe(room)
                elif room in self._subscribing:
                    await asyncio.shield(self._subscribing[room])
            messages, last_seq, recovered = await self._catch_up(room, since)
            if not rejoin:
                await self.presence.join(room, conn.user)
                present = True
            members = await self.presence.members(room)
        except BaseException:
            conn.abort_join(room)
            if present:
                await self._undo_presence(room, conn.user)
            if not rejoin and self.hub.remove(room, conn):
                await self.broker.unsubscribe(room)
            raise
        joined: events.Joined = {
            "type": "joined",
            "room": room,
            "seq": last_seq,
            "members": members,
            "messages": messages,
            "recovered": recovered,
        }
        conn.finish_join(room, last_seq, events.encode(joined))

    async def _subscribe(self, room: str) -> None:
        done = asyncio.get_running_loop().create_future()
        self._subscribing[room] = done
        try:
            await self.broker.subscribe(room)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(Unavailable(f"cannot subscribe to {room}: {exc!r}"))
            done.exception()  # retrieved: only the racing joins (if any) need it
            raise
        finally:
            del self._subscribing[room]

    async def _undo_presence(self, room: str, user: str) -> None:
        # A join that failed after counting the user as online must not leave a ghost.
        try:
            await self.presence.leave(room, user)
        except Unavailable as exc:
            log.warning("presence undo for %s in %s failed: %s", user, room, exc)

    async def _catch_up(self, room: str, since: int | None) -> tuple[list[Message], int, bool]:
        """Messages after ``since`` from the broker's log, older ones from the store."""
        limit = self.settings.history_limit
        head = await self.broker.recent(room, since, limit)
        if since is None:
            messages = head.messages
            if len(messages) < limit and self.store is not None and head.last_seq > len(messages):
                before = messages[0]["seq"] if messages else head.last_seq + 1
                older, _ = await self._store_call(
                    self.store.history, room, before, limit - len(messages)
                )
                messages = older + messages
            return messages, head.last_seq, False
        missed = head.last_seq - since
        if missed <= 0:
            return [], head.last_seq, True
        if missed > self.settings.recover_limit:
            recent = await self.broker.recent(room, None, limit)
            # A second read: newer messages may have arrived; they come live, after `joined`.
            older_than_head = [m for m in recent.messages if m["seq"] <= head.last_seq]
            return older_than_head, head.last_seq, False
        messages = head.messages
        first = messages[0]["seq"] if messages else head.last_seq + 1
        if first > since + 1 and self.store is not None:
            older = await self._store_call(self.store.after, room, since, first - since - 1)
            messages = [m for m in older if m["seq"] < first] + messages
        recovered = bool(messages) and messages[0]["seq"] == since + 1 and _gapless(messages)
        return messages, head.last_seq, recovered

    async def history(
        self, room: str, before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Up to ``limit`` messages before ``before``, newest last: broker log, then store.

        A page is gapless and ends right below ``before`` (or at the room's newest message).
        While the store lags behind what the log no longer holds, the answer is the log's part
        alone (``more``), or :class:`Unavailable` when the log holds nothing below ``before``."""
        newest = await self.broker.older(room, before, limit)
        if len(newest) == limit:
            return newest, newest[0]["seq"] > 1
        older: list[Message] = []
        more = False
        upper = newest[0]["seq"] if newest else before
        if self.store is not None and (upper is None or upper > 1):
            older, more = await self._store_call(
                self.store.history, room, upper, limit - len(newest)
            )
        if newest:
            if newest[0]["seq"] > 1 and (not older or older[-1]["seq"] != newest[0]["seq"] - 1):
                # The store has not caught up with the log yet: never return a page with a hole.
                return newest, True
        elif before is not None and self.store is not None:
            await self._check_stored_up_to(room, before - 1, older[-1]["seq"] if older else 0)
        return older + newest, more

    async def _check_stored_up_to(self, room: str, wanted: int, top: int) -> None:
        """A store page ending at ``top`` where the log holds nothing below ``wanted + 1``:
        :class:`Unavailable` if the store has not stored ``wanted`` yet (the persister lags).

        ``wanted`` is capped at the room's last seq (a ``before`` past it asks for nothing
        newer). A store already holding later seqs than a missing one will not get it any more
        (lost with Redis data before it was stored): the page is then what exists."""
        if top >= wanted:
            return
        head = (await self.broker.recent(room, None, 1)).last_seq
        wanted = min(wanted, head)
        if top >= wanted:
            return
        assert self.store is not None
        if await self._store_call(self.store.last_seq, room) < wanted:
            raise Unavailable(f"history of {room}: seqs up to {wanted} are not stored yet")

    def evict(self, conn: Connection) -> None:
        """Take a slow consumer out of its rooms now, before its socket is gone."""
        task = asyncio.create_task(self._leave_all(conn), name=f"evict-{conn.user}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave_all(self, conn: Connection) -> None:
        for room in list(conn.rooms):
            if room in conn.rooms:
                await self._leave(conn, room)

    async def _leave(self, conn: Connection, room: str) -> None:
        conn.rooms.pop(room, None)
        if self.hub.remove(room, conn):
            try:
                await self.broker.unsubscribe(room)
            except Unavailable as exc:
                log.warning("unsubscribe from %s failed: %s", room, exc)
        try:
            await self.presence.leave(room, conn.user)
        except Unavailable as exc:
            log.warning("presence leave for %s in %s failed: %s", conn.user, room, exc)

    async def _store_call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            log.warning("store unavailable: %r", exc)
            raise Unavailable("the message store is unreachable") from exc


def _gapless(messages: list[Message]) -> bool:
    return all(b["seq"] == a["seq"] + 1 for a, b in itertools.pairwise(messages))
