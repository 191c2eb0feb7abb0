"""Who may connect: origins, capacity, connection rate per address, send rate per user."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client, http_get, join, wait_until

pytestmark = pytest.mark.anyio


async def test_origin_allow_list(start_server: Any) -> None:
    server = start_server(chat_allowed_origins="https://chat.example, http://localhost:3000")
    evil = await Client.connect(
        server.ws_url, additional_headers={"Origin": "https://evil.example"}
    )
    assert await evil.closed() == 1008
    for origin in ["https://chat.example", "http://localhost:3000/"]:
        good = await Client.connect(server.ws_url, additional_headers={"Origin": origin})
        await good.expect("hello")
    # Non-browser clients send no Origin and are let in (they are not the CSRF risk).
    await (await Client.connect(server.ws_url)).expect("hello")


async def test_capacity_refuses_with_1013_and_readyz_says_so(start_server: Any) -> None:
    server = start_server(chat_max_connections=2)
    first = await join(server, "a")
    await join(server, "b")
    over = await Client.connect(server.ws_url)
    assert await over.closed() == 1013
    status, body = http_get(server.url + "/readyz")
    assert status == 503 and b"capacity" in body
    await first.close()
    wait_until(lambda: http_get(server.url + "/readyz")[0] == 200, what="room again")
    await join(server, "c")


async def test_new_connection_rate_per_address(start_server: Any) -> None:
    server = start_server(chat_conn_rate_per_ip=0.001, chat_conn_burst_per_ip=3)
    for n in range(3):
        await join(server, f"u{n}")
    refused = await Client.connect(server.ws_url)
    assert await refused.closed() == 1013
    # Behind a trusted proxy (loopback by default) each forwarded address has its own budget.
    for n in range(3):
        client = await Client.connect(
            server.ws_url, additional_headers={"X-Forwarded-For": f"203.0.113.{n}"}
        )
        await client.expect("hello")


async def test_forwarded_for_from_untrusted_peers_is_ignored(start_server: Any) -> None:
    server = start_server(
        chat_conn_rate_per_ip=0.001, chat_conn_burst_per_ip=2, chat_trusted_proxies="10.0.0.0/8"
    )
    for n in range(2):
        client = await Client.connect(
            server.ws_url, additional_headers={"X-Forwarded-For": f"198.51.100.{n}"}
        )
        await client.expect("hello")
    spoofed = await Client.connect(
        server.ws_url, additional_headers={"X-Forwarded-For": "198.51.100.99"}
    )
    assert await spoofed.closed() == 1013


async def test_send_rate_is_shared_by_a_users_connections(start_server: Any) -> None:
    server = start_server(
        chat_user_rate_per_s=0.01, chat_user_rate_burst=3, chat_rate_per_s=100, chat_rate_burst=100
    )
    one = await join(server, "alice", "r")
    two = await join(server, "alice", "r")
    for n in range(2):
        await one.send(type="send", room="r", text=f"one {n}")
        await one.expect("message", room="r", text=f"one {n}")
    await two.send(type="send", room="r", text="two 0")
    await two.expect("message", room="r", text="two 0")
    await two.send(type="send", room="r", text="two 1", cid="x")
    error = await two.expect("error")
    assert (error["code"], error["cid"]) == ("rate_limited", "x")
    # Another user is not affected.
    bob = await join(server, "bob", "r")
    await bob.send(type="send", room="r", text="hi")
    await bob.expect("message", room="r", text="hi")
