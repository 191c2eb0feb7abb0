"""The monitoring files, checked offline: Prometheus configuration and alert rules through
Debian's ``promtool`` (check config, check rules, and the alert unit tests), the Grafana dashboard
and provisioning, the compose ``monitoring`` profile and the k8s monitoring overlay.

Every metric the dashboard and the rules name must be one the services export
(``shared/metrics.py``); tests/e2e/test_monitoring.py evaluates every expression on a real
Prometheus scraping the native stack.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from yamllint import linter
from yamllint.config import YamlLintConfig

from shared.metrics import GatewayMetrics, PersisterMetrics
from stack.processes import SCRAPE_JOBS, Prometheus
from tests.conftest import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules.test.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "chat.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"
OVERLAY = ROOT / "k8s" / "overlays" / "monitoring"
COMPOSE = ROOT / "docker-compose.yml"
METRIC = re.compile(r"\bchat_[a-z0-9_]+\b")
JOB = re.compile(r'job="([^"]+)"')
GRID_COLUMNS = 24


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # No skip: `make system-deps` installs Debian's prometheus (promtool comes with it).
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run `make system-deps` (Debian package prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def exported_metrics() -> set[str]:
    """Every series name the gateway and the persister export (counters end in _total,
    histograms come as _bucket/_sum/_count), plus Prometheus' own ``up``."""
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    PersisterMetrics(registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = {"up"}
    for family in registry.collect():  # a labelled family has no samples yet: use its type
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts as {container path: host path relative to the repository}."""
    found = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source.removeprefix("./")
    return found


# --- Prometheus -----------------------------------------------------------------------------------


def test_promtool_checks_the_config_and_its_rules() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should() -> None:
    """rules.test.yml: the down, lag, backlog, broker and refusal alerts, before and after."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_native_stack_config_passes_promtool(tmp_path: Path) -> None:
    """What `make stack MONITORING=1` generates (its rule file is the shipped rules.yml)."""
    prometheus = Prometheus(
        tmp_path,
        port=9999,
        scrape_interval="1s",
        targets={"chat-gateway": ["127.0.0.1:8001", "127.0.0.1:8002"]},
    )
    prometheus.prepare()
    result = promtool("check", "config", str(prometheus.conf))
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads(prometheus.targets_file("chat-gateway").read_text())
    assert written == [{"targets": ["127.0.0.1:8001", "127.0.0.1:8002"]}]
    assert json.loads(prometheus.targets_file("chat-persister").read_text()) == []
    assert prometheus.config()["rule_files"] == [str(RULES)]


def test_every_config_names_the_jobs_the_rules_and_dashboard_use() -> None:
    jobs = {job["job_name"] for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}
    assert set(SCRAPE_JOBS) <= jobs
    ports = {
        job["job_name"]: job["dns_sd_configs"][0]["port"]
        for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]
        if "dns_sd_configs" in job
    }
    assert ports == {"chat-gateway": 8000, "chat-persister": 8001}  # the compose services' ports
    used = {job for text in [RULES.read_text(), DASHBOARD.read_text()] for job in JOB.findall(text)}
    assert used == set(SCRAPE_JOBS)


def test_the_rules_cover_the_issue() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    wanted = {
        "ChatGatewayDown",
        "ChatPersisterDown",
        "ChatBrokerDown",
        "ChatPersistLagHigh",
        "ChatPersistBacklogGrowing",
        "ChatSlowConsumerClosesSpiking",
        "ChatConnectionsRefusedSpiking",
    }
    assert wanted <= alerts.keys()
    assert alerts["ChatPersistLagHigh"]["expr"] == "chat_persist_lag_seconds > 5"
    assert alerts["ChatPersistLagHigh"]["for"] == "1m"
    assert alerts["ChatPersistBacklogGrowing"]["for"] == "5m"
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    for expr in [rule["expr"] for rule in rules()] + dashboard_exprs():
        unknown = set(METRIC.findall(expr)) - exported
        assert not unknown, f"{expr!r} names metrics nobody exports: {unknown}"


# --- Grafana --------------------------------------------------------------------------------------


def test_the_dashboard_is_valid() -> None:
    board = dashboard()
    assert board["uid"] == "chat-backend" and board["title"]
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        title = panel["title"]
        assert title and panel["type"] in {"timeseries", "stat"}, title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title} has no targets"
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target["datasource"] == panel["datasource"], title
            # Only Grafana's own interval variable, which the e2e test substitutes.
            assert set(re.findall(r"\$\w+", target["expr"])) <= {"$__rate_interval"}, title
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, title
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{title} overlaps another panel"
        cells |= mine


def test_the_dashboard_covers_the_issue() -> None:
    """Connections, messages in, deliveries and frames, latency, flush window, slow closes,
    errors by code, persister rows, batch size, lag and backlog (joins: no metric exists)."""
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert {
        "chat_connections",
        "chat_messages_published_total",
        "chat_events_delivered_total",
        "chat_frames_sent_total",
        "chat_publish_to_deliver_seconds_bucket",
        "chat_coalesce_window_seconds",
        "chat_slow_consumers_closed_total",
        "chat_protocol_errors_total",
        "chat_connections_refused_total",
        "chat_persist_rows_written_total",
        "chat_persist_batch_size_bucket",
        "chat_persist_lag_seconds",
        "chat_persist_backlog",
    } <= used
    errors = [
        t["expr"]
        for p in dashboard()["panels"]
        for t in p["targets"]
        if "chat_protocol_errors_total" in t["expr"]
    ]
    assert errors and all("by (code)" in expr for expr in errors)


def test_grafana_provisioning_matches_compose() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"  # the compose service
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "chat.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"

    grafana = compose_services()["grafana"]
    grafana_mounts = mounts(grafana)
    assert grafana_mounts["/etc/grafana/provisioning"] == "monitoring/grafana/provisioning"
    assert grafana_mounts[provider["options"]["path"]] == "monitoring/grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_the_compose_monitoring_profile() -> None:
    services = compose_services()
    prometheus, grafana = services["prometheus"], services["grafana"]
    for service in (prometheus, grafana):
        assert service["profiles"] == ["monitoring"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), "loopback only"
        assert service["healthcheck"]["test"]
    assert mounts(prometheus)["/etc/prometheus"] == "monitoring/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    for name in SCRAPE_JOBS:  # what the DNS discovery looks up
        assert name.removeprefix("chat-") in services


# --- Kubernetes (Prometheus Operator CRDs: no offline schema, so checked here by hand) ---------


def test_the_prometheus_rule_is_rules_yml() -> None:
    (rule,) = yaml.safe_load_all((OVERLAY / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_pod_monitor_selects_gateways_and_persisters() -> None:
    (monitor,) = yaml.safe_load_all((OVERLAY / "podmonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for name in expression["values"]:
        deployment = yaml.safe_load((ROOT / "k8s" / "base" / f"{name}-deployment.yaml").read_text())
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == name
        ports = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert endpoint["port"] in ports
        assert f"chat-{name}" in SCRAPE_JOBS
    assert endpoint["path"] == "/metrics"
    (relabel,) = endpoint["relabelings"]
    assert relabel["targetLabel"] == "job" and relabel["replacement"] == "chat-$1"


def test_the_monitoring_overlay_renders(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "chat"
    for resource in kustomization["resources"]:
        assert (OVERLAY / resource).is_file()
    rendered = kustomize_build(OVERLAY)
    assert sorted(doc["kind"] for doc in rendered) == ["PodMonitor", "PrometheusRule"]
    for doc in rendered:
        assert doc["metadata"]["namespace"] == "chat"
    # The rendered rule groups are still valid Prometheus rules.
    groups = next(doc for doc in rendered if doc["kind"] == "PrometheusRule")["spec"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(groups))
    check = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_monitoring_yaml_passes_yamllint() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    problems = []
    for path in sorted([*MONITORING.rglob("*.yml"), *OVERLAY.glob("*.yaml")]):
        for problem in linter.run(path.read_text(), config, str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{problem.line}: {problem}")
    assert not problems, "\n".join(problems)
