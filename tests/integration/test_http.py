"""The HTTP side of a gateway: page, rooms, messages, health, readiness, metrics."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import ChatServer, http_get, join

pytestmark = pytest.mark.anyio


async def test_page_and_static_files(server: ChatServer) -> None:
    status, body = http_get(server.url + "/")
    assert status == 200 and b"<html" in body.lower()
    for name in ["app.js", "style.css"]:
        assert http_get(f"{server.url}/static/{name}")[0] == 200


async def test_rooms_and_messages(server: ChatServer) -> None:
    alice = await join(server, "alice", "api")
    for n in range(5):
        await alice.send(type="send", room="api", text=f"t{n}")
    await alice.messages("api", 5)
    status, body = http_get(server.url + "/api/rooms")
    assert status == 200 and orjson.loads(body) == [{"room": "api", "online": 1, "last_seq": 5}]
    status, body = http_get(server.url + "/api/rooms/api/messages?before=5&limit=2")
    page = orjson.loads(body)
    assert status == 200 and page["room"] == "api" and page["more"] is True
    assert [(m["seq"], m["text"], m["user"]) for m in page["messages"]] == [
        (3, "t2", "alice"),
        (4, "t3", "alice"),
    ]
    status, body = http_get(server.url + "/api/rooms/empty/messages")
    assert status == 200 and orjson.loads(body) == {"room": "empty", "messages": [], "more": False}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/rooms/bad%20room/messages", "invalid_room"),
        ("/api/rooms/ok/messages?limit=0", "bad_request"),
        ("/api/rooms/ok/messages?limit=101", "bad_request"),
        ("/api/rooms/ok/messages?before=x", "bad_request"),
    ],
)
async def test_bad_queries_are_400(server: ChatServer, path: str, code: str) -> None:
    status, body = http_get(server.url + path)
    assert status == 400 and orjson.loads(body)["code"] == code


async def test_health_and_readiness(server: ChatServer) -> None:
    assert http_get(server.url + "/healthz")[0] == 200
    status, body = http_get(server.url + "/readyz")
    assert status == 200 and orjson.loads(body)["status"] == "ok"


async def test_metrics(server: ChatServer) -> None:
    alice = await join(server, "alice", "m")
    await alice.send(type="send", room="m", text="x")
    await alice.messages("m", 1)
    status, body = http_get(server.url + "/metrics")
    text = body.decode()
    assert status == 200
    for name in [
        "chat_connections 1.0",
        "chat_local_rooms 1.0",
        "chat_messages_published_total 1.0",
        "chat_frames_sent_total",
        "chat_events_coalesced_total",
        "chat_slow_consumers_closed_total 0.0",
        "chat_publish_to_deliver_seconds_bucket",
        "chat_persist_batch_size_bucket",
        "chat_persist_rows_written_total",
        "chat_persist_lag_seconds",
    ]:
        assert name in text, name
