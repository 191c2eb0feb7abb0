"""HTTP and WebSocket endpoints (docs/protocol.md, "HTTP" and "Transport")."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.websockets import WebSocket

from gateway.auth import Identity, bearer_token, identify, identify_request
from gateway.connection import Connection
from gateway.node import Node
from shared import errors, events
from shared.errors import ProtocolError, Refused
from shared.responses import json_response, metrics_response

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


ApiHandler = Callable[[Request, Identity | None], Awaitable[Response]]


def api(handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
    """An ``/api`` endpoint: in token mode it answers only a valid token, else 401.

    The token is ``Authorization: Bearer <jwt>`` or ``?token=`` and is verified by
    ``gateway/auth.py`` exactly like a ``/ws`` token. ``handler`` gets the caller's identity
    (``None`` in anonymous mode, where the API stays open) to apply its ``rooms`` claim.
    """

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        node: Node = request.state.node
        secret = node.settings.auth_secret
        authorization = request.headers.get("authorization")
        token = bearer_token(authorization, request.query_params.get("token"))
        try:
            caller = identify_request(secret, token)
        except Refused as exc:
            # RFC 6750: the error is named only when a token was presented.
            challenge = 'Bearer realm="chat"' + (', error="invalid_token"' if token else "")
            response = json_response(
                events.error(errors.UNAUTHENTICATED, exc.reason),
                401,
                {"WWW-Authenticate": challenge},
            )
        else:
            response = await handler(request, caller)
        if secret:
            # Answers depend on the token, which may sit in the URL: no cache may keep them.
            response.headers["Cache-Control"] = "no-store"
        return response

    return endpoint


async def index(request: Request) -> Response:
    """The chat web page."""
    return FileResponse(STATIC / "index.html")


@api
async def rooms(request: Request, caller: Identity | None) -> Response:
    """Every known room with its online count and last seq (in token mode: those the token
    may join)."""
    node: Node = request.state.node
    known = await node.presence.rooms()
    if caller is not None:
        known = [r for r in known if caller.may_join(r["room"])]
    return json_response(known)


@api
async def room_messages(request: Request, caller: Identity | None) -> Response:
    """Stored messages of a room, paginated by seq (``before``, ``limit``)."""
    node: Node = request.state.node
    room = request.path_params["room"]
    if not events.valid_room(room):
        return json_response(events.error(errors.INVALID_ROOM, "invalid room name"), 400)
    if caller is not None and not caller.may_join(room):
        # The same rooms-claim check as a WebSocket `join` or `history`.
        return json_response(
            events.error(errors.FORBIDDEN_ROOM, "the token does not allow this room", room=room),
            403,
        )
    try:
        before = _int_param(request, "before", 1, None)
        limit = _int_param(request, "limit", 1, events.MAX_HISTORY_LIMIT)
    except ValueError as exc:
        return json_response(events.error(errors.BAD_REQUEST, str(exc)), 400)
    try:
        messages, more = await node.history(room, before, limit or node.settings.history_limit)
    except errors.Unavailable as exc:
        log.warning("history of %s unavailable (ref %s): %s", room, exc.ref, exc)
        return json_response(events.error(errors.UNAVAILABLE, exc.public), 503)
    return json_response({"room": room, "messages": messages, "more": more})


def _int_param(request: Request, name: str, low: int, high: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        raise ValueError(f"{name} must be an integer in {low}..{high or 'inf'}")
    return int(raw)


async def healthz(request: Request) -> Response:
    """Alive unless a background task has been down for longer than it may be."""
    node: Node = request.state.node
    stuck = node.stuck()
    if stuck:
        return json_response({"status": "unhealthy", "reason": "; ".join(stuck)}, 503)
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the broker (and the store, where this process writes) answer."""
    node: Node = request.state.node
    if node.draining:
        return json_response({"status": "unavailable", "reason": "shutting down"}, 503)
    if node.hub.connection_count >= node.settings.max_connections:
        return json_response({"status": "unavailable", "reason": "at capacity"}, 503)
    down = [task.status() for task in node.tasks() if not task.healthy]
    if down:
        return json_response({"status": "unavailable", "reason": "; ".join(down)}, 503)
    try:
        await asyncio.wait_for(node.broker.ping(), 2)
    except Exception as exc:
        return json_response({"status": "unavailable", "reason": f"broker: {exc!r}"}, 503)
    if node.store is not None and node.writes_store:
        try:
            await asyncio.wait_for(asyncio.to_thread(node.store.ping), 5)
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": f"store: {exc!r}"}, 503)
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    registry: CollectorRegistry = request.state.registry
    return metrics_response(registry)


async def websocket(ws: WebSocket) -> None:
    """``/ws``: identify, say hello, then read commands until the client goes away."""
    node: Node = ws.state.node
    settings = node.settings
    params = ws.query_params
    await ws.accept()
    try:
        ip = node.admission.client_ip(ws.client.host if ws.client else None, ws.headers)
        node.admission.check(ws.headers.get("origin"), ip, node.hub.connection_count)
        identity = identify(settings.auth_secret, params.get("user"), params.get("token"))
    except Refused as exc:
        node.metrics.refused.labels(str(exc.code)).inc()
        await ws.close(exc.code, exc.reason[:120])
        return
    if node.draining:
        await ws.close(errors.GOING_AWAY, "gateway shutting down")
        return
    conn = Connection(ws, identity, settings, node.metrics, node.hub, node.evict)
    node.attach(conn)
    try:
        hello: events.Hello = {
            "type": "hello",
            "user": identity.user,
            "gateway": settings.gateway_id,
            "auth": identity.auth,
            "limits": settings.limits(),
        }
        conn.push(events.encode(hello))
        for room in params.getlist("room"):
            try:
                command = room_command(room)
            except ProtocolError as exc:
                conn.send_error(exc)
                continue
            await _run(node, conn, command)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if conn.closing:
                continue
            text = message.get("text")
            if text is None:
                conn.send_error(ProtocolError(errors.BAD_REQUEST, "binary frames are not accepted"))
                continue
            try:
                command = events.parse_command(text, settings.max_text_chars)
            except ProtocolError as exc:
                conn.send_error(exc)
                continue
            await _run(node, conn, command)
    finally:
        await node.detach(conn)


def room_command(room: str) -> events.Command:
    """The ``join`` that ``?room=`` stands for (validated like a frame)."""
    return events.parse_command(orjson.dumps({"type": "join", "room": room}), 0)


async def _run(node: Node, conn: Connection, command: events.Command) -> None:
    try:
        await node.handle(conn, command)
    except ProtocolError as exc:
        conn.send_error(exc)
    except Exception:
        log.exception("command %r from %s failed", command, conn.user)
        conn.send_error(ProtocolError(errors.INTERNAL, "internal error"))
