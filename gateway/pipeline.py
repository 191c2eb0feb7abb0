"""One Redis connection that pipelines every command issued to it.

The publish path calls one script per message. Through the client's pool each call takes a
connection, writes, waits for its reply and gives the connection back: a round trip and the
pool's bookkeeping per message, and one read and one write system call in Redis per message.
Here the commands issued during one event-loop tick go out in one write and the replies are
read back in order by one reader task, so a busy gateway sends many publishes per round trip
and Redis answers them with one write.

Failure: a broken connection (or a reply that does not come within the client's socket
timeout) fails every command in flight with the error; the outcome of those commands is
unknown, exactly as for a lost reply on a pooled connection (the publish path answers
``unavailable`` and clients resend with the same ``cid``). The next command opens a new
connection. Error replies (``NOSCRIPT``...) fail only their own command.

The connection is the pipe's own, made with the client's settings (address, credentials,
timeouts) but never lent by the pool nor given back to it: a connection with replies in flight
can never reach another caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

Command = tuple[Any, ...]


class CommandPipe:
    """``await pipe.call("EVALSHA", ...)``: pipelined on one connection of its own."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._conn: AbstractConnection | None = None
        self._queued: list[tuple[Command, asyncio.Future[Any]]] = []
        self._in_flight: deque[asyncio.Future[Any]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, *command: Any) -> Any:
        """Send ``command`` with the others of this tick; its reply, or raise its error."""
        if self._closed:
            raise RedisConnectionError("the command pipe is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((command, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        return await future

    async def close(self) -> None:
        """Fail what is pending, stop both tasks, close the connection."""
        self._closed = True
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop(RedisConnectionError("the command pipe is closed"))

    async def _write(self) -> None:
        """Send everything queued so far in one write (a task: it runs after the callers of
        this tick have queued their commands)."""
        try:
            while self._queued:
                if self._conn is None:
                    self._conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
                conn = self._conn
                if not self._in_flight:
                    await self._check_idle(conn)
                batch, self._queued = self._queued, []
                self._in_flight.extend(future for _, future in batch)
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read(conn))
                await conn.send_packed_command(
                    conn.pack_commands(command for command, _ in batch), check_health=False
                )
        except Exception as exc:  # whatever broke the write, the connection is done for
            await self._drop(exc)
        finally:
            self._writer = None
            if self._queued and not self._closed:  # queued while the failure was handled
                self._writer = asyncio.create_task(self._write())

    @staticmethod
    async def _check_idle(conn: AbstractConnection) -> None:
        """Reconnect a connection that went bad while nothing was in flight (a restarted Redis
        closed it): the pool checks each connection it lends the same way."""
        if conn.is_connected:
            try:
                stale = await conn.can_read()
            except (RedisError, OSError):
                stale = True
            if not stale:
                return
            await conn.disconnect()
        await conn.connect()  # type: ignore[no-untyped-call]  # before the reader starts

    async def _read(self, conn: AbstractConnection) -> None:
        """Hand each reply to the command that is next in line, while any is."""
        try:
            while self._in_flight:
                try:
                    reply: Any = await conn.read_response()
                except ResponseError as exc:  # an error reply: the connection is fine
                    reply = exc
                future = self._in_flight.popleft()
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except Exception as exc:  # a reply that cannot be read leaves the stream out of step
            await self._drop(exc)
        finally:
            if self._reader is asyncio.current_task():
                self._reader = None

    async def _drop(self, exc: BaseException) -> None:
        """Fail every command in flight or queued, stop reading, close the connection. The
        state is reset before the first await: a command issued meanwhile starts afresh on a
        new connection."""
        error = exc if isinstance(exc, RedisError) else RedisConnectionError(repr(exc))
        waiting = [*self._in_flight, *(future for _, future in self._queued)]
        self._in_flight.clear()
        self._queued.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await conn.disconnect()
