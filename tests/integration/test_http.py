"""The HTTP side of a gateway: page, rooms and messages (and who may read them), health, readiness,
metrics."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import orjson
import pytest

from tests.conftest import ChatServer, Client, http_get, join

pytestmark = pytest.mark.anyio

SECRET = "http-api-test-secret-" + "0123456789abcdef" * 2


def token(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """A token for ``claims`` (``exp`` one minute ahead unless given)."""
    claims.setdefault("exp", int(time.time()) + 60)
    return jwt.encode(claims, secret if algorithm != "none" else None, algorithm=algorithm)


def get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], Any]:
    """GET ``url``: status, headers (lower-case names) and the JSON body, for any status."""
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            status, headers, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, err.headers, err.read()
    return status, {k.lower(): v for k, v in headers.items()}, orjson.loads(body)


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


async def test_anonymous_mode_needs_no_token(server: ChatServer) -> None:
    alice = await join(server, "alice", "open")
    await alice.send(type="send", room="open", text="hi")
    await alice.messages("open", 1)
    # A token is ignored without a secret, as on /ws: the API stays open to everyone.
    for authorization in [None, "Bearer not-a-token"]:
        status, headers, body = get(server.url + "/api/rooms", authorization)
        assert (status, body) == (200, [{"room": "open", "online": 1, "last_seq": 1}])
        assert "www-authenticate" not in headers and "cache-control" not in headers
        status, _, page = get(server.url + "/api/rooms/open/messages", authorization)
        assert status == 200 and [m["text"] for m in page["messages"]] == ["hi"]


class TestTokenMode:
    """With ``CHAT_AUTH_SECRET`` set the API wants the same token as ``/ws``."""

    @pytest.fixture
    async def token_server(self, start_server: Any) -> ChatServer:
        """A token-mode server with messages in ``lobby``, ``team-a`` and ``secret``."""
        server: ChatServer = start_server(chat_auth_secret=SECRET)
        admin = await Client.connect(f"{server.ws_url}?token={token(sub='admin')}")
        for room in ["lobby", "team-a", "secret"]:
            await admin.send(type="join", room=room)
            await admin.expect("joined", room=room)
            await admin.send(type="send", room=room, text=f"in {room}")
            await admin.expect("message", room=room)
        return server

    async def test_without_a_valid_token_401(self, token_server: ChatServer) -> None:
        expired = token(sub="dave", exp=int(time.time()) - 10)
        forged = token("another-secret-that-is-long-enough!!", sub="dave")
        # case -> (Authorization header, ?token=, whether a token was presented)
        cases: dict[str, tuple[str | None, str | None, bool]] = {
            "missing": (None, None, False),
            "other scheme": ("Basic YWxpY2U6cHc=", None, False),
            "empty bearer": ("Bearer ", None, False),
            "bad signature": (f"Bearer {forged}", None, True),
            "expired": (f"Bearer {expired}", None, True),
            "expired, in the query": (None, expired, True),
            "alg none": ("Bearer " + token(algorithm="none", sub="dave"), None, True),
            "no sub": ("Bearer " + token(name="dave"), None, True),
            "garbage": ("Bearer not.a.jwt", None, True),
        }
        for case, (authorization, query, presented) in cases.items():
            for path in ["/api/rooms", "/api/rooms/lobby/messages"]:
                url = token_server.url + path + (f"?token={query}" if query else "")
                status, headers, body = get(url, authorization)
                assert (status, body["type"], body["code"]) == (401, "error", "unauthorized"), case
                # RFC 6750: the challenge names an error only when a token was presented.
                challenge = 'Bearer realm="chat"' + (', error="invalid_token"' if presented else "")
                assert headers["www-authenticate"] == challenge, case
                assert headers["cache-control"] == "no-store", case
            if case.startswith("expired"):
                # The same words as the WebSocket's 4001 reason.
                assert body["detail"] == "invalid token: Signature has expired"

    async def test_rooms_claim_403(self, token_server: ChatServer) -> None:
        bearer = "Bearer " + token(sub="erin", rooms=["lobby", "team-*"])
        status, headers, body = get(token_server.url + "/api/rooms/secret/messages", bearer)
        assert status == 403 and headers["cache-control"] == "no-store"
        assert (body["code"], body["room"]) == ("forbidden", "secret")
        # Even a room that does not exist yet: the claim decides, not the data.
        status, _, body = get(token_server.url + "/api/rooms/nowhere/messages", bearer)
        assert (status, body["code"]) == (403, "forbidden")

    async def test_allowed_200(self, token_server: ChatServer) -> None:
        limited = token(sub="erin", rooms=["lobby", "team-*"])
        for room in ["lobby", "team-a"]:
            # The header (what the page sends) and ?token= (parity with /ws) are both accepted.
            by_header = get(f"{token_server.url}/api/rooms/{room}/messages", f"Bearer {limited}")
            by_query = get(f"{token_server.url}/api/rooms/{room}/messages?token={limited}")
            for status, headers, page in [by_header, by_query]:
                assert status == 200 and headers["cache-control"] == "no-store"
                assert [m["text"] for m in page["messages"]] == [f"in {room}"]
        # The room list shows only what the token may join; without a claim, everything.
        status, _, listed = get(token_server.url + "/api/rooms", f"Bearer {limited}")
        assert status == 200 and [r["room"] for r in listed] == ["lobby", "team-a"]
        status, _, listed = get(f"{token_server.url}/api/rooms?token={token(sub='root')}")
        assert status == 200 and [r["room"] for r in listed] == ["lobby", "secret", "team-a"]
