"""The web page (gateway/static) in a real Chromium against a real ``python -m embedded`` server.

Everything waits on DOM state (Playwright's auto-waiting ``expect`` and ``wait_for_function``);
there are no fixed sleeps. Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from playwright.sync_api import Page, WebSocketRoute, expect

from gateway.auth import mint
from tests.conftest import ChatServer
from tests.e2e.conftest import ARTIFACTS, Tab

ROOM = "lobby"
JOINING = re.compile(r"\bjoining\b")
AWAY = re.compile(r"^(offline|connecting)$")

OpenPage = Callable[..., Tab]


def chat_url(server: ChatServer, user: str, room: str = ROOM) -> str:
    return f"{server.url}/?{urlencode({'user': user, 'room': room})}"


def wait_joined(page: Page, room: str = ROOM) -> None:
    """Online, and the room is joined (its sidebar entry lost the ``joining`` class)."""
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    expect(page.locator(f'#rooms li[data-room="{room}"]')).not_to_have_class(JOINING)
    page.wait_for_function(
        "room => window.chat.state === 'online' && window.chat.rooms[room]?.joined === true",
        arg=room,
    )


def send(page: Page, text: str, *, enter: bool = False) -> None:
    """Type ``text`` into the composer and submit it with the button (or Enter)."""
    box = page.locator("#message-input")
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        page.locator("#send-btn").click()
    expect(box).to_have_value("")


def expect_messages(page: Page, expected: list[tuple[str, str]]) -> None:
    """The message list is exactly ``expected`` (user, text), confirmed, with seqs 1..n in order.

    Every node is counted (pending ones too), so a duplicate or a stray pending copy fails.
    """
    msgs = page.locator("#messages .msg")
    expect(msgs.locator(".msg-text")).to_have_text([text for _, text in expected])
    expect(msgs.locator(".msg-user")).to_have_text([user for user, _ in expected])
    expect(page.locator("#messages [data-pending]")).to_have_count(0)
    # to_have_text normalizes whitespace; the text must also be byte-for-byte what was sent.
    rendered = msgs.evaluate_all(
        "ns => ns.map(n => [n.dataset.seq, n.querySelector('.msg-text').textContent])"
    )
    assert rendered == [[str(i), text] for i, (_, text) in enumerate(expected, 1)]


def last_seq(page: Page, room: str = ROOM) -> int:
    return int(page.evaluate("room => window.chat.rooms[room].lastSeq", room))


def watch_pending(page: Page) -> None:
    """Record the text of every pending (not yet echoed) node added to #messages."""
    page.evaluate(
        """() => {
          window.__pendingSeen = [];
          new MutationObserver((records) => {
            for (const r of records) for (const n of r.addedNodes) {
              if (n.dataset?.pending === '1') {
                window.__pendingSeen.push(n.querySelector('.msg-text').textContent);
              }
            }
          }).observe(document.getElementById('messages'), { childList: true });
        }"""
    )


def test_two_users_exchange_messages(server: ChatServer, open_page: OpenPage) -> None:
    alice = open_page(chat_url(server, "alice"), name="alice")
    bob = open_page(chat_url(server, "bob"), name="bob")
    for tab in (alice, bob):
        wait_joined(tab.page)
        expect(tab.page.locator("#members .member-name")).to_have_text(["alice", "bob"])
        expect(tab.page.locator("#room-title")).to_have_text(ROOM)
        watch_pending(tab.page)

    send(alice.page, "hello from alice")  # the Send button
    first = [("alice", "hello from alice")]
    expect_messages(alice.page, first)  # echoed: the pending copy became a seq'd message
    expect_messages(bob.page, first)

    send(bob.page, "hi alice, bob here <3", enter=True)  # Enter in the textarea
    both = [*first, ("bob", "hi alice, bob here <3")]
    for tab in (alice, bob):
        expect_messages(tab.page, both)
        assert last_seq(tab.page) == 2
        assert tab.page.evaluate("window.chat.unacked") == []

    # Each sender's own message was shown as pending first, then replaced by the echo.
    assert alice.page.evaluate("window.__pendingSeen") == ["hello from alice"]
    assert bob.page.evaluate("window.__pendingSeen") == ["hi alice, bob here <3"]
    expect(alice.page.locator("#messages .msg.own .msg-text")).to_have_text(["hello from alice"])
    expect(bob.page.locator("#messages .msg.own .msg-text")).to_have_text(["hi alice, bob here <3"])

    ARTIFACTS.mkdir(exist_ok=True)
    alice.page.screenshot(path=ARTIFACTS / "chat-alice.png")
    bob.page.screenshot(path=ARTIFACTS / "chat-bob.png")


def test_phone_layout(server: ChatServer, open_page: OpenPage) -> None:
    width = 390
    carol = open_page(
        chat_url(server, "carol"),
        name="carol-phone",
        viewport={"width": width, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        reduced_motion="reduce",
    )
    page = carol.page
    wait_joined(page)
    # The sidebar is a closed drawer; the composer fits the screen.
    expect(page.locator("#sidebar")).not_to_be_visible()
    expect(page.locator("#sidebar-toggle")).to_be_visible()
    for sel in ("#message-input", "#send-btn"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (sel, box)

    page.locator("#message-input").fill("hello from a phone")
    page.locator("#send-btn").tap()
    long_word = "x" * 300  # one unbreakable word must wrap, not widen the page
    page.locator("#message-input").fill(long_word)
    page.locator("#send-btn").tap()
    expect_messages(page, [("carol", "hello from a phone"), ("carol", long_word)])
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for box in page.locator("#messages .msg").evaluate_all(
        "ns => ns.map(n => n.getBoundingClientRect().right)"
    ):
        assert box <= width

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "chat-phone.png")

    page.locator("#sidebar-toggle").tap()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator(f'#rooms li[data-room="{ROOM}"]')).to_be_visible()
    expect(page.locator('#members li[data-user="carol"]')).to_be_visible()
    page.screenshot(path=ARTIFACTS / "chat-phone-drawer.png")
    page.locator("#backdrop").tap(position={"x": width - 20, "y": 400})  # beside the drawer
    expect(page.locator("#sidebar")).not_to_be_visible()


def test_token_mode_directory_shows_only_allowed_rooms(
    start_server: Callable[..., ChatServer], open_page: OpenPage
) -> None:
    """In token mode the page sends its token to ``/api/rooms`` too (without it: 401, and an
    empty directory); the server lists only the rooms the token's ``rooms`` claim allows."""
    secret = "e2e-page-secret-" + "0123456789abcdef" * 2
    server = start_server(chat_auth_secret=secret)
    rooms = ["lobby", "team-a", "secret"]
    query = [("token", mint(secret, "admin")), *(("room", room) for room in rooms)]
    admin = open_page(f"{server.url}/?{urlencode(query)}", name="admin")
    for room in rooms:
        wait_joined(admin.page, room)
    limited = mint(secret, "erin", rooms=["lobby", "team-*"])
    erin = open_page(f"{server.url}/?{urlencode({'token': limited, 'room': ROOM})}", name="erin")
    wait_joined(erin.page)
    assert erin.page.evaluate("window.chat.user") == "erin"
    expect(erin.page.locator("#directory li[data-available]")).to_have_count(1)
    expect(erin.page.locator("#directory li[data-available]")).to_have_attribute(
        "data-available", "team-a"
    )


def test_message_text_is_never_markup(server: ChatServer, open_page: OpenPage) -> None:
    evil_name = "<img src=x onerror=alert(2)>"
    alice = open_page(chat_url(server, evil_name), name="alice")
    bob = open_page(chat_url(server, "bob"), name="bob")
    for tab in (alice, bob):
        wait_joined(tab.page)
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>window.pwned=1</script>",
        '"><svg onload=alert(3)><b>bold?</b>',
    ]
    for i, text in enumerate(payloads, 1):
        send(alice.page, text)
        expect(alice.page.locator("#messages .msg[data-seq]")).to_have_count(i)

    expected = [(evil_name, text) for text in payloads]
    for tab in (alice, bob):
        page = tab.page
        expect_messages(page, expected)
        expect(page.locator("#members .member-name")).to_contain_text([evil_name])
        for tag in ("img", "svg", "b", "script"):
            expect(page.locator(f"#messages {tag}")).to_have_count(0)
        assert page.evaluate("document.body.querySelectorAll('img, svg, script').length") == 0
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert tab.dialogs == []


def test_reconnects_after_server_restart(server: ChatServer, open_page: OpenPage) -> None:
    """The server goes away and comes back on the same port and data dir.

    Alice keeps typing while it is down: the page holds those sends (pending) and sends them,
    with their cids, after it has rejoined. Whether bob's page is back before or after they go
    out is a race, and deliberately not controlled: either way (live or in the rejoin's replay)
    bob must end up with every message exactly once, in seq order.
    """
    alice = open_page(chat_url(server, "alice"), name="alice")
    bob = open_page(chat_url(server, "bob"), name="bob")
    for tab in (alice, bob):
        wait_joined(tab.page)
    sent = []
    for text in ("before 1", "before 2"):
        send(alice.page, text)
        sent.append(("alice", text))
        expect_messages(alice.page, sent)
    expect_messages(bob.page, sent)

    server.stop()
    for tab in (alice, bob):
        expect(tab.page.locator("#status")).to_have_attribute("data-state", AWAY)
    for text in ("typed offline 1", "typed offline 2"):
        send(alice.page, text)
        sent.append(("alice", text))
    expect(alice.page.locator("#messages .msg[data-pending='1'] .msg-text")).to_have_text(
        ["typed offline 1", "typed offline 2"]
    )

    server.start()
    for tab in (alice, bob):
        wait_joined(tab.page)
        expect_messages(tab.page, sent)
    # Bob answers; his echo comes after anything the server still had queued for him.
    send(bob.page, "bob is back")
    sent.append(("bob", "bob is back"))
    for tab in (alice, bob):
        expect_messages(tab.page, sent)
        assert last_seq(tab.page) == len(sent)


def test_catches_up_on_messages_sent_while_away(server: ChatServer, open_page: OpenPage) -> None:
    """Bob is guaranteed to be away while alice writes, and catches up when he is back.

    Determinism: before the server is stopped, bob's page gets a WebSocket route. While the gate
    is closed, every new socket the page opens is answered by Playwright with close code 1001
    (what a restarting gateway sends), so the page keeps retrying every 0.2-0.8 s and never
    reaches the server. The server is stopped (a real disconnect: bob's socket is closed by the
    shutdown) and restarted; alice then sends three messages, which bob cannot have seen. Then
    the gate opens: the next attempt goes through to the real server, the page rejoins with
    ``since`` = its last seq, and must show the missed messages exactly once, in order.
    """
    alice = open_page(chat_url(server, "alice"), name="alice")
    bob = open_page(chat_url(server, "bob"), name="bob")
    for tab in (alice, bob):
        wait_joined(tab.page)
    sent = []
    for i in range(1, 4):
        send(alice.page, f"seen live {i}")
        sent.append(("alice", f"seen live {i}"))
        expect_messages(alice.page, sent)
    expect_messages(bob.page, sent)

    gate_open = False
    held: list[str] = []

    def gate(ws: WebSocketRoute) -> None:
        if gate_open:
            ws.connect_to_server()
        else:
            held.append(ws.url)
            ws.close(code=1001, reason="e2e: held offline")

    bob.page.route_web_socket(lambda url: "/ws" in url, gate)  # sockets opened from now on

    server.stop()
    expect(bob.page.locator("#status")).to_have_attribute("data-state", AWAY)
    server.start()
    wait_joined(alice.page)
    for i in range(1, 4):
        send(alice.page, f"while bob was away {i}")
        sent.append(("alice", f"while bob was away {i}"))
        expect_messages(alice.page, sent)

    # Bob really was away: he tried (and was held), and has nothing new.
    assert held, "bob's page never tried to reconnect"
    assert bob.page.evaluate("window.chat.state") != "online"
    expect_messages(bob.page, sent[:3])
    assert last_seq(bob.page) == 3

    gate_open = True
    wait_joined(bob.page)
    expect_messages(bob.page, sent)
    send(bob.page, "caught up")
    sent.append(("bob", "caught up"))
    for tab in (alice, bob):
        expect_messages(tab.page, sent)
        assert last_seq(tab.page) == len(sent)

    # A newcomer after the restart gets the whole room: 1-3 from the store, the rest from the log.
    carol = open_page(chat_url(server, "carol"), name="carol")
    wait_joined(carol.page)
    expect_messages(carol.page, sent)
