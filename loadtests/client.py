"""The WebSocket side of a virtual user: picows (Cython, callback API) or websockets.

Both hand every received text frame, with its receipt time, to the user's verifier, and send
text frames without awaiting (picows writes straight to the transport; the websockets fallback
schedules the send).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from loadtests.verify import UserVerifier

try:  # picows is the fast path; websockets is the fallback
    import picows

    HAVE_PICOWS = True
except ImportError:  # pragma: no cover - picows is a pinned dev dependency
    HAVE_PICOWS = False

ABNORMAL = 1006


class VirtualUser:
    """One connection. ``ready`` is set once hello and every ``joined`` have arrived."""

    def __init__(self, url: str, verifier: UserVerifier, rooms: list[str]) -> None:
        self.url = url
        self.verifier = verifier
        self.rooms = rooms
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.refused = ""  # error code received instead of a joined
        self._closing = False  # we started the close

    def _check_ready(self) -> None:
        v = self.verifier
        if v.gateway and all(room in v.rooms for room in self.rooms):
            self.ready.set()
        elif v.last_error:  # a join was refused: give up at once instead of timing out
            self.refused = v.last_error
            self.ready.set()

    def _on_close(self, code: int | None) -> None:
        if self.closed.is_set():
            return
        if not self._closing:
            self.close_code = ABNORMAL if code is None else code
            self.verifier.tally.closes[self.close_code] += 1
        self.closed.set()
        self.ready.set()  # wake a waiter; it checks ``closed``

    async def connect(self) -> None:
        raise NotImplementedError

    def send(self, payload: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


if HAVE_PICOWS:

    class _Listener(picows.WSListener):
        def __init__(self, user: PicowsUser) -> None:
            self.user = user
            self.verifier = user.verifier
            self.fragments: list[bytes] = []

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is picows.WSMsgType.TEXT and frame.fin and not self.fragments:
                self.verifier.on_frame(frame.get_payload_as_memoryview(), time.time() * 1000)
                if not self.user.ready.is_set():
                    self.user._check_ready()
            elif kind is picows.WSMsgType.TEXT or kind is picows.WSMsgType.CONTINUATION:
                self.fragments.append(frame.get_payload_as_bytes())
                if frame.fin:
                    data = b"".join(self.fragments)
                    self.fragments.clear()
                    self.verifier.on_frame(data, time.time() * 1000)
                    self.user._check_ready()
            elif kind is picows.WSMsgType.CLOSE:
                code = frame.get_close_code()
                code = int(getattr(code, "value", code))
                self.user._on_close(code)
                with contextlib.suppress(Exception):
                    transport.send_close(picows.WSCloseCode.OK)
                transport.disconnect()
            elif kind is picows.WSMsgType.BINARY:
                self.verifier.tally.unexpected += 1

        def on_ws_disconnected(self, transport: Any) -> None:
            self.user._on_close(None)

    class PicowsUser(VirtualUser):
        transport: Any = None

        async def connect(self) -> None:
            self.transport, _ = await picows.ws_connect(
                lambda: _Listener(self),
                self.url,
                websocket_handshake_timeout=30,
                enable_auto_pong=True,
                max_frame_size=64 * 1024 * 1024,
            )

        def send(self, payload: bytes) -> None:
            if not self.closed.is_set():
                self.transport.send(picows.WSMsgType.TEXT, payload)

        async def close(self) -> None:
            if self.transport is None or self.closed.is_set():
                return
            self._closing = True
            with contextlib.suppress(Exception):
                self.transport.send_close(picows.WSCloseCode.OK)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.transport.wait_disconnected(), 5)
            self.transport.disconnect()
            self.closed.set()


class WebsocketsUser(VirtualUser):
    """The fallback client (slower: a task per connection reading frames)."""

    ws: Any = None
    _reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import websockets

        try:
            async for data in self.ws:
                self.verifier.on_frame(data, time.time() * 1000)
                if not self.ready.is_set():
                    self._check_ready()
        except websockets.ConnectionClosed:
            pass
        rcvd = self.ws.close_rcvd
        self._on_close(rcvd.code if rcvd is not None else None)

    def send(self, payload: bytes) -> None:
        if not self.closed.is_set():
            task = asyncio.ensure_future(self.ws.send(payload.decode()))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        if self.ws is None or self.closed.is_set():
            return
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.closed.set()


def user_class(client: str) -> type[VirtualUser]:
    """``picows`` (if installed) or ``websockets``; ``socketio`` (picows, Engine.IO v4: the
    peers of ``make bench``)."""
    if client == "socketio":
        from loadtests.socketio import SocketIOUser  # here: that module imports this one

        return SocketIOUser
    if client == "picows" and HAVE_PICOWS:
        return PicowsUser
    return WebsocketsUser
