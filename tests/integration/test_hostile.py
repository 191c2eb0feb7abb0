"""A corpus of hostile frames sent to a live gateway: each gets its documented answer, the
gateway keeps serving others, and hostile text round-trips verbatim through storage."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.conftest import Client, join

pytestmark = pytest.mark.anyio

HOSTILE_TEXTS = [
    "'; DROP TABLE message; --",
    '" OR 1=1 --',
    "<img src=x onerror=alert(1)>",
    "<script>alert(document.cookie)</script>",
    "{{7*7}} ${7*7} %s %n",
    "null\u0000byte",
    "bell\u0007 escape\u001b[31m red",
    "\u202egnirts desrever",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "e\u0301\u0301\u0301 combining",
    "\U0001f600\U0001f469\u200d\U0001f469\u200d\U0001f467 emoji",
    "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594 astral",
    "line1\nline2\r\nline3\ttab",
    "\\u0000 not an escape",
    "x" * 4000,
]

# frame → the error code it must get (the connection stays open)
ERROR_FRAMES: list[tuple[str | bytes, str]] = [
    ("[" * 5000 + "]" * 5000, "bad_request"),  # deep nesting
    ('{"type":"send","room":"h","text":"x","n":' + "[" * 1000 + "]" * 1000 + "}", "ok"),
    ('{"type":"join","room":"h","since":1e308}', "bad_request"),
    ('{"type":"join","room":"h","since":' + "9" * 40 + "}", "bad_request"),
    ('{"type":"history","room":"h","limit":-1}', "bad_request"),
    ('{"type":"send","room":"h","text":"\\ud800"}', "bad_request"),  # lone surrogate
    ('{"type":"send","room":"h","text":"a","cid":{"$gt":""}}', "bad_request"),
    ('{"type":"send","room":["h"],"text":"a"}', "invalid_room"),
    ('{"type":"join","room":"h\\u0000"}', "invalid_room"),
    ('{"type":"join","room":"../../etc/passwd"}', "invalid_room"),
    ('{"type":"join","room":"<script>"}', "invalid_room"),
    ('{"type":"__proto__"}', "unknown_type"),
    ('{"type":"send","type":"ping"}', "pong"),  # duplicate keys: the last one wins
    ("", "bad_request"),
    ("   ", "bad_request"),
    ("null", "bad_request"),
    ("\ufeff{}", "bad_request"),
    (b"\x00\x01binary", "bad_request"),
]


async def test_hostile_frames_get_their_answer_and_others_are_undisturbed(
    start_server: Any,
) -> None:
    server = start_server(chat_rate_burst=1000, chat_user_rate_burst=1000)
    bystander = await join(server, "bystander", "h")
    attacker = await join(server, "attacker", "h")
    for frame, expected in ERROR_FRAMES:
        await attacker.ws.send(frame)
        if expected == "ok":
            assert (await attacker.expect("message", room="h"))["text"] == "x"
        elif expected == "pong":
            await attacker.expect("pong")
        else:
            error = await attacker.expect("error")
            assert error["code"] == expected, (frame[:60], error)
        await bystander.send(type="ping")
        await bystander.expect("pong")


async def test_invalid_utf8_closes_1007_alone(server: Any) -> None:
    bystander = await join(server, "bystander", "h")
    attacker = await join(server, "attacker", "h")
    await attacker.ws.send(b'{"type":"ping","x":"\xff\xfe"}', text=True)
    assert await attacker.closed() == 1007
    await bystander.send(type="send", room="h", text="still fine")
    assert (await bystander.expect("message", room="h"))["text"] == "still fine"


async def test_hostile_text_round_trips_verbatim_through_storage(start_server: Any) -> None:
    server = start_server(chat_rate_burst=1000, chat_user_rate_burst=1000)
    alice = await join(server, "alice", "store")
    for n, text in enumerate(HOSTILE_TEXTS):
        await alice.send(type="send", room="store", text=text, cid=f"c{n}")
    echoed = [m["text"] for m in await alice.messages("store", len(HOSTILE_TEXTS))]
    assert echoed == HOSTILE_TEXTS
    await asyncio.to_thread(server.stop)
    server.start()
    status_body = await asyncio.to_thread(_get, f"{server.url}/api/rooms/store/messages?limit=100")
    assert [m["text"] for m in orjson.loads(status_body)["messages"]] == HOSTILE_TEXTS
    bob = await join(server, "bob")
    await bob.send(type="history", room="store", limit=100)
    page = await bob.expect("history", room="store")
    assert [m["text"] for m in page["messages"]] == HOSTILE_TEXTS


def _get(url: str) -> bytes:
    from tests.conftest import http_get

    status, body = http_get(url)
    assert status == 200
    return body


async def test_hostile_user_names(server: Any) -> None:
    for name in ["%00", "a%0Ab", "%E2%80%AE", "x" * 40]:
        client = await Client.connect(f"{server.ws_url}?user={name}")
        assert await client.closed() == 1008
    # Markup in a name is just a name (rendered as text by the page).
    client = await join(server, "<b>bold</b>", "h")
    await client.send(type="send", room="h", text="hi")
    assert (await client.expect("message", room="h"))["user"] == "<b>bold</b>"
