"""Every refusal of docs/protocol.md: ``error`` events that keep the connection, and close codes."""

from __future__ import annotations

import time

import jwt
import pytest
import websockets

from tests.conftest import ChatServer, Client, http_get, join

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"room": "x"}', "bad_request"),
        ('{"type": 5}', "bad_request"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "join"}', "bad_request"),
        ('{"type": "join", "room": "bad room!"}', "invalid_room"),
        ('{"type": "join", "room": 7}', "invalid_room"),
        ('{"type": "join", "room": "ok", "since": "3"}', "bad_request"),
        ('{"type": "join", "room": "ok", "since": -1}', "bad_request"),
        ('{"type": "send", "room": "other", "text": "hi"}', "not_joined"),
        ('{"type": "send", "room": "lobby", "text": "   "}', "bad_request"),
        ('{"type": "send", "room": "lobby", "text": 12}', "bad_request"),
        ('{"type": "send", "room": "lobby", "text": "' + "x" * 4001 + '"}', "too_large"),
        (
            '{"type": "send", "room": "lobby", "text": "hi", "cid": "' + "c" * 65 + '"}',
            "bad_request",
        ),
        ('{"type": "history", "room": "lobby", "limit": 101}', "bad_request"),
        ('{"type": "history", "room": "lobby", "before": true}', "bad_request"),
        ('{"type": "leave", "room": "never"}', "not_joined"),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_stays(
    server: ChatServer, frame: str, code: str
) -> None:
    client = await join(server, "alice", "lobby")
    await client.ws.send(frame)
    error = await client.expect("error")
    assert error["code"] == code and error["detail"]
    await client.send(type="send", room="lobby", text="still here")
    assert (await client.expect("message", room="lobby"))["text"] == "still here"


async def test_error_echoes_cid_and_room(server: ChatServer) -> None:
    client = await join(server, "alice")
    await client.send(type="send", room="nope", text="x", cid="abc")
    error = await client.expect("error")
    assert (error["code"], error["cid"], error["room"]) == ("not_joined", "abc", "nope")


async def test_binary_frame_is_bad_request(server: ChatServer) -> None:
    client = await join(server, "alice")
    await client.ws.send(b'{"type":"ping"}')
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send(type="ping")
    await client.expect("pong")


async def test_frame_over_limit_closes_1009(server: ChatServer) -> None:
    client = await join(server, "alice", "lobby")
    await client.ws.send("x" * (16 * 1024 + 1))
    assert await client.closed() == 1009


async def test_bad_user_name_closes_1008(server: ChatServer) -> None:
    for name in ["a" * 33, "bad%0Aname", "%20%20"]:
        client = await Client.connect(f"{server.ws_url}?user={name}")
        assert await client.closed() == 1008


async def test_too_many_rooms(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(chat_max_rooms=2)
    client = await join(server, "alice", "r1", "r2")
    await client.send(type="join", room="r3")
    error = await client.expect("error")
    assert (error["code"], error["room"]) == ("too_many_rooms", "r3")


async def test_joins_are_rate_limited_per_connection_and_per_user(start_server) -> None:  # type: ignore[no-untyped-def]
    """Each join may create a room's state in Redis: a client cannot mint rooms fast. Excess joins
    are refused with rate_limited; the connection stays open (issue 13, item 5)."""
    server = start_server(
        chat_join_rate_per_s=0.01,
        chat_join_rate_burst=3,
        chat_user_join_rate_per_s=0.01,
        chat_user_join_rate_burst=5,
    )
    first = await join(server, "alice", "r1", "r2", "r3")
    await first.send(type="join", room="r4")
    error = await first.expect("error", room="r4")
    assert error["code"] == "rate_limited" and "joins/s" in error["detail"]
    second = await join(server, "alice", "r5", "r6")  # the user's budget: 5 in all
    await second.send(type="join", room="r7")
    assert (await second.expect("error", room="r7"))["code"] == "rate_limited"
    other = await join(server, "bob", "r7")  # another user has a budget of his own
    await first.send(type="ping")
    await first.expect("pong")
    await other.close()


async def test_rate_limit_errors_then_closes_4029(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(chat_rate_per_s=1, chat_rate_burst=3, chat_rate_strikes=5)
    client = await join(server, "alice", "fast")
    for n in range(20):
        await client.send(type="send", room="fast", text=str(n), cid=f"c{n}")
    accepted = [await client.expect("message", room="fast") for _ in range(3)]
    assert [m["seq"] for m in accepted][:3] == [1, 2, 3]
    error = await client.expect("error")
    assert error["code"] == "rate_limited" and error["cid"].startswith("c")
    assert await client.closed() == 4029


async def test_slow_sender_is_not_rate_limited(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(chat_rate_per_s=1000, chat_rate_burst=5)
    client = await join(server, "alice", "ok")
    for n in range(5):
        await client.send(type="send", room="ok", text=str(n))
        await client.expect("message", room="ok")


class TestTokenMode:
    SECRET = "test-secret-long-enough-even-for-hs512-" + "0123456789abcdef" * 2

    @pytest.fixture
    def token_server(self, start_server) -> ChatServer:  # type: ignore[no-untyped-def]
        return start_server(chat_auth_secret=self.SECRET)

    def token(self, secret: str | None = None, **claims: object) -> str:
        claims.setdefault("exp", int(time.time()) + 60)
        return jwt.encode(claims, secret or self.SECRET, algorithm="HS256")

    async def test_valid_token(self, token_server: ChatServer) -> None:
        client = await Client.connect(f"{token_server.ws_url}?token={self.token(sub='dave')}")
        hello = await client.expect("hello")
        assert (hello["user"], hello["auth"]) == ("dave", "token")

    @pytest.mark.parametrize("case", ["missing", "forged", "expired", "no-sub", "user-param"])
    async def test_refused_with_4001(self, token_server: ChatServer, case: str) -> None:
        query = {
            "missing": "",
            "forged": f"token={self.token('another-secret-that-is-long-enough!!', sub='dave')}",
            "expired": f"token={self.token(sub='dave', exp=int(time.time()) - 10)}",
            "no-sub": f"token={self.token(name='dave')}",
            "user-param": "user=dave",
        }[case]
        client = await Client.connect(f"{token_server.ws_url}?{query}")
        assert await client.closed() == 4001

    @pytest.mark.parametrize("algorithm", ["none", "HS512"])
    async def test_other_algorithms_are_refused(
        self, token_server: ChatServer, algorithm: str
    ) -> None:
        claims = {"sub": "mallory", "exp": int(time.time()) + 60}
        key = None if algorithm == "none" else self.SECRET
        token = jwt.encode(claims, key, algorithm=algorithm)
        client = await Client.connect(f"{token_server.ws_url}?token={token}")
        assert await client.closed() == 4001
        _, metrics = http_get(token_server.url + "/metrics")
        assert b'chat_connections_refused_total{code="4001"} 1.0' in metrics

    async def test_rooms_claim_limits_history_too(self, token_server: ChatServer) -> None:
        token = self.token(sub="erin", rooms=["lobby"])
        client = await Client.connect(f"{token_server.ws_url}?token={token}")
        await client.send(type="history", room="secret")
        error = await client.expect("error")
        assert (error["code"], error["room"]) == ("forbidden", "secret")

    async def test_rooms_claim_limits_joins(self, token_server: ChatServer) -> None:
        token = self.token(sub="erin", rooms=["team-*", "lobby"])
        client = await Client.connect(f"{token_server.ws_url}?token={token}")
        await client.expect("hello")
        for room in ["lobby", "team-a"]:
            await client.send(type="join", room=room)
            await client.expect("joined", room=room)
        await client.send(type="join", room="secret")
        error = await client.expect("error")
        assert (error["code"], error["room"]) == ("forbidden", "secret")


async def test_a_bad_client_does_not_disturb_others(server: ChatServer) -> None:
    good = await join(server, "good", "lobby")
    bad = await join(server, "bad", "lobby")
    await bad.ws.send("x" * (17 * 1024))
    assert await bad.closed() == 1009
    with pytest.raises(websockets.ConnectionClosed):
        await bad.ws.send("{}")
    await good.send(type="send", room="lobby", text="fine")
    assert (await good.expect("message", room="lobby"))["text"] == "fine"
