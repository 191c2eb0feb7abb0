"""Browser fixtures: Debian's Chromium driven by Playwright's sync API (no pytest-playwright).

One browser per test module; every page gets its own context (its own storage, so two pages are two
independent users). Pages record JS errors and dialogs; a test that fails leaves a screenshot of
each of its pages in ``test-artifacts/failures/``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from stack.topology import Stack, StackConfig
from tests.conftest import ROOT, Client, free_port

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


# Module scope, not session: while sync Playwright runs, it marks its event loop as the thread's
# running loop between calls, so it must be stopped before any anyio test of another package
# runs in this process ("Cannot run the event loop while another loop is running").
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # No skip: `make test` installs chromium (make system-deps); a missing browser is a failure.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make system-deps`"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page in its own context, with what it reported."""

    page: Page
    context: BrowserContext
    name: str
    errors: list[str] = field(default_factory=list)  # uncaught JS exceptions
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Tab]]:
    """Factory: ``open_page(url, name=..., **context_options)`` opens ``url`` in a fresh context."""
    tabs: list[Tab] = []

    def open_(url: str | None = None, name: str = "page", **context_options: Any) -> Tab:
        context_options.setdefault("viewport", {"width": 1100, "height": 720})
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        tab = Tab(context.new_page(), context, name)
        tabs.append(tab)
        tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))

        def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        if url is not None:
            tab.page.goto(url)
        return tab

    yield open_

    if request.node.stash.get(FAILED, False):
        out = ARTIFACTS / "failures"
        out.mkdir(parents=True, exist_ok=True)
        test = re.sub(r"[^\w.-]+", "_", request.node.name)
        for i, tab in enumerate(tabs):
            with contextlib.suppress(Exception):  # the page may be gone; only a courtesy
                tab.page.screenshot(path=out / f"{test}-{i}-{tab.name}.png", full_page=True)
    for tab in tabs:
        tab.context.close()
    errors = {tab.name: tab.errors for tab in tabs if tab.errors}
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: ``start_stack(**StackConfig options)`` runs the native topology; stopped after."""
    stacks: list[Stack] = []

    def start(**options: Any) -> Stack:
        env = {
            # Tests send in bursts from one address; production limits stay the default.
            "CHAT_RATE_BURST": "1000",
            "CHAT_RATE_PER_S": "1000",
            "CHAT_USER_RATE_BURST": "1000",
            "CHAT_USER_RATE_PER_S": "1000",
            "CHAT_CONN_BURST_PER_IP": "10000",
            **options.pop("env", {}),
        }
        config = StackConfig(
            workdir=tmp_path / f"stack{len(stacks)}", port=free_port(), env=env, **options
        )
        stack = Stack(config)
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in stacks:
        stack.stop()


async def one_client_per_gateway(stack: Stack, room: str) -> list[Client]:
    """Connect through nginx until every gateway holds one of our clients (``client.hello``
    tells which)."""
    wanted = {g.env["CHAT_GATEWAY_ID"] for g in stack.gateways if g.running}
    clients: dict[str, Client] = {}
    for n in range(20 * len(wanted)):
        client = await Client.connect(f"{stack.ws_url}?user=user{n}&room={room}")
        hello = await client.expect("hello")
        await client.expect("joined", room=room)
        if hello["gateway"] in clients:
            await client.close()
            continue
        clients[hello["gateway"]] = client
        if set(clients) == wanted:
            return list(clients.values())
    raise AssertionError(f"nginx never reached every gateway: {sorted(clients)}")
