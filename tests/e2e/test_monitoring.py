"""A real Prometheus (Debian's, as `make stack MONITORING=1` runs it) scrapes the native stack
under traffic: every PromQL expression of the Grafana dashboard and of the alert rules evaluates
through its HTTP API, the deliveries panel shows traffic, the rules load and evaluate, and a
stopped gateway makes its alert go pending.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from stack.processes import Prometheus
from tests.conftest import ROOT, Client
from tests.e2e.conftest import one_client_per_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("close_clients")]

DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "chat.json"
RULES = ROOT / "monitoring" / "prometheus" / "rules.yml"
SCRAPE_INTERVAL = "1s"
# What Grafana puts in place of $__rate_interval: here, many scrapes at 1 s.
GRAFANA_VARIABLES = {"$__rate_interval": "30s"}
MESSAGES_EACH = 10
T = TypeVar("T")


def promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace("$labels", ""), f"unsubstituted variable in {expr!r}"
    return expr


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every dashboard query."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["refId"], promql(target["expr"]))
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_expr(title: str, ref: str = "A") -> str:
    return next(expr for t, r, expr in dashboard_targets() if (t, r) == (title, ref))


async def eventually(probe: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``probe`` (a quick local HTTP call) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def all_targets_up(prometheus: Prometheus, expected: int) -> bool:
    active = prometheus.api("targets", state="active")["activeTargets"]
    return len(active) == expected and all(t["health"] == "up" for t in active)


def value(prometheus: Prometheus, expr: str) -> float:
    """The single value of ``expr`` now (0 when it has no sample yet)."""
    samples = prometheus.query(expr)
    assert len(samples) <= 1, samples
    return float(samples[0]["value"][1]) if samples else 0.0


def positive(prometheus: Prometheus, expr: str) -> Callable[[], bool]:
    return lambda: value(prometheus, expr) > 0


def rules_evaluated(prometheus: Prometheus) -> list[dict[str, Any]]:
    """Every loaded rule once each has been evaluated at least once (health no longer unknown)."""
    loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    return loaded if loaded and all(r["health"] != "unknown" for r in loaded) else []


def alert_state(prometheus: Prometheus, name: str, instance: str) -> str | None:
    for alert in prometheus.api("alerts")["alerts"]:
        labels = alert["labels"]
        if labels["alertname"] == name and labels.get("instance") == instance:
            return str(alert["state"])
    return None


async def chat(clients: list[Client], room: str) -> None:
    """Everyone sends; everyone receives every message (fan-out across gateways)."""
    for n in range(MESSAGES_EACH):
        for i, client in enumerate(clients):
            await client.send(type="send", room=room, text=f"{i}:{n}", cid=f"{i}:{n}")
    for client in clients:
        await client.messages(room, MESSAGES_EACH * len(clients))


async def test_prometheus_scrapes_the_stack_and_every_expression_evaluates(
    start_stack: Any,
) -> None:
    stack = start_stack(gateways=2, monitoring=True, scrape_interval=SCRAPE_INTERVAL)
    prometheus: Prometheus = stack.prometheus
    targets = len(stack.gateways) + len(stack.persisters) + 1  # + Prometheus itself
    # Scraped at least once before the traffic: the counters' rates start from their zeros.
    await eventually(lambda: all_targets_up(prometheus, targets), 60, "every target up")

    clients = await one_client_per_gateway(stack, "metrics")
    await chat(clients, "metrics")

    deliveries = panel_expr("Deliveries and frames /s")
    assert "chat_events_delivered_total" in deliveries
    for expr in (
        deliveries,
        panel_expr("Deliveries and frames /s", "B"),  # frames
        panel_expr("Messages in /s"),
        panel_expr("Persister rows written /s"),
    ):
        await eventually(positive(prometheus, expr), 30, f"{expr} > 0")
    assert value(prometheus, panel_expr("Connections")) >= len(clients)

    # Every expression, dashboard and rules alike: Prometheus answers each without an error.
    expressions = [expr for _, _, expr in dashboard_targets()] + list(rule_exprs().values())
    failures = {}
    for expr in expressions:
        try:
            prometheus.query(expr)
        except RuntimeError as exc:
            failures[expr] = str(exc)
    assert not failures, failures

    # The rule file the stack loaded is the shipped one, and every rule evaluates cleanly.
    loaded = await eventually(lambda: rules_evaluated(prometheus), 30, "every rule evaluated")
    assert {r["name"] for r in loaded} == set(rule_exprs())
    assert [r for r in loaded if r["health"] != "ok"] == []
    firing = {r["name"] for r in loaded if r["state"] != "inactive"}
    assert firing == set(), f"a healthy stack under light traffic raised {firing}"

    # A gateway dies: its `up` drops to 0 and ChatGatewayDown goes pending for that instance.
    stopped = stack.gateways[1]
    stack.kill_gateway(1)
    instance = f"127.0.0.1:{stopped.port}"
    state = await eventually(
        lambda: alert_state(prometheus, "ChatGatewayDown", instance), 30, "the alert"
    )
    assert state == "pending"  # `for: 1m`: firing comes a minute later
