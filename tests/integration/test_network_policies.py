"""The NetworkPolicies of k8s/, as kustomize renders them, evaluated offline: a small model of the
NetworkPolicy rules (selectors, namespaces, ports, ipBlocks) decides, for every pair of pods,
whether a connection is allowed, and the result must be exactly the intended set (docs/security.md,
"Who can reach the data stores"). No cluster is needed; the model is checked against the
semantics of the API (a peer's podSelector alone means the policy's own namespace; a peer with
both selectors needs both; no policy selecting a pod leaves it open).
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, kustomize_build

K8S = ROOT / "k8s"
NAMESPACE = "chat"
NAME = "app.kubernetes.io/name"
NS_NAME = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace

# The rest of the cluster, as k8s/base/network-policies.yaml assumes it.
INGRESS_CONTROLLER = {NAME: "ingress-nginx"}
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
DNS = {"k8s-app": "kube-dns"}


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ports: frozenset[tuple[int, str]] = frozenset()  # (port, protocol)
    port_names: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {NS_NAME: self.namespace}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # pods here are matched by selectors; addresses by ip_allowed()
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = pod.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, pod.namespace_labels)
    return in_namespace and selects(peer.get("podSelector", {}), pod.labels)


def port_matches(rule: dict[str, Any], target: Pod | None, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = None if target is None else target.port_names.get(wanted)
        if wanted is not None and wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


class Cluster:
    """The rendered policies, and the questions the tests ask of them."""

    def __init__(self, policies: list[dict[str, Any]]) -> None:
        self.policies = policies

    def _governing(self, pod: Pod, kind: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and kind in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"]["podSelector"], pod.labels)
        ]

    def ingress_allowed(self, source: Pod, target: Pod, port: int, protocol: str) -> bool:
        governing = self._governing(target, "Ingress")
        if not governing:
            return True  # not isolated for ingress
        return any(
            (
                "from" not in rule
                or any(
                    peer_matches(peer, p["metadata"]["namespace"], source) for peer in rule["from"]
                )
            )
            and port_matches(rule, target, port, protocol)
            for p in governing
            for rule in p["spec"].get("ingress", [])
        )

    def egress_allowed(self, source: Pod, target: Pod, port: int, protocol: str) -> bool:
        governing = self._governing(source, "Egress")
        if not governing:
            return True
        return any(
            (
                "to" not in rule
                or any(
                    peer_matches(peer, p["metadata"]["namespace"], target) for peer in rule["to"]
                )
            )
            and port_matches(rule, target, port, protocol)
            for p in governing
            for rule in p["spec"].get("egress", [])
        )

    def connects(self, source: Pod, target: Pod, port: int, protocol: str) -> bool:
        return self.egress_allowed(source, target, port, protocol) and self.ingress_allowed(
            source, target, port, protocol
        )

    def ip_allowed(self, source: Pod, address: str, port: int, protocol: str = "TCP") -> bool:
        """Egress from ``source`` to an address outside the cluster's pods."""
        governing = self._governing(source, "Egress")
        if not governing:
            return True
        ip = ipaddress.ip_address(address)
        for policy in governing:
            for rule in policy["spec"].get("egress", []):
                if not port_matches(rule, None, port, protocol):
                    continue
                if "to" not in rule:
                    return True
                for peer in rule["to"]:
                    block = peer.get("ipBlock")
                    if (
                        block
                        and ip in ipaddress.ip_network(block["cidr"])
                        and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
                    ):
                        return True
        return False


def workload_pods(rendered: list[dict[str, Any]]) -> dict[str, Pod]:
    pods = {}
    for doc in rendered:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        template = doc["spec"]["template"]
        containers = template["spec"]["containers"] + template["spec"].get("initContainers", [])
        container_ports = [p for c in containers for p in c.get("ports", [])]
        pods[doc["metadata"]["name"]] = Pod(
            doc["metadata"]["name"],
            doc["metadata"]["namespace"],
            template["metadata"]["labels"],
            frozenset((p["containerPort"], p.get("protocol", "TCP")) for p in container_ports),
            {p["name"]: p["containerPort"] for p in container_ports if "name" in p},
        )
    return pods


# Pods of the rest of the cluster: the ones the policies name, and impostors that must not pass.
CONTROLLER = Pod(
    "ingress-nginx-controller",
    INGRESS_NAMESPACE,
    INGRESS_CONTROLLER,
    frozenset({(80, "TCP"), (443, "TCP")}),
)
PROMETHEUS = Pod(
    "prometheus", MONITORING_NAMESPACE, {NAME: "prometheus"}, frozenset({(9090, "TCP")})
)
KUBE_DNS = Pod("coredns", "kube-system", DNS, frozenset({(53, "UDP"), (53, "TCP")}))
STRANGERS = [
    Pod("debug", NAMESPACE, {"run": "debug"}, frozenset({(8080, "TCP")})),  # kubectl run
    # Some other pod in the controller's namespace.
    Pod("backend", INGRESS_NAMESPACE, {NAME: "default-backend"}, frozenset({(8080, "TCP")})),
    # Another namespace's pod wearing our labels, and a fake controller elsewhere.
    Pod("lookalike", "default", {NAME: "gateway"}, frozenset({(8000, "TCP")})),
    Pod("fake-controller", "default", INGRESS_CONTROLLER, frozenset({(80, "TCP")})),
    Pod("fake-dns", "default", DNS, frozenset({(53, "UDP")})),
]


def allowed_connections(cluster: Cluster, pods: list[Pod]) -> set[tuple[str, str, int, str]]:
    """Every (source, target, port, protocol) allowed, for each pair with one end in ``chat``."""
    allowed = set()
    for source in pods:
        for target in pods:
            if source == target or NAMESPACE not in (source.namespace, target.namespace):
                continue
            for port, protocol in target.ports:
                if cluster.connects(source, target, port, protocol):
                    allowed.add((source.name, target.name, port, protocol))
    return allowed


@pytest.fixture(scope="module")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """k8s/ in a temp dir, with secrets.env filled from its example (never in the work tree)."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy)
    example = copy / "overlays" / "production" / "secrets.env.example"
    shutil.copy(example, example.with_suffix(""))
    return copy


@pytest.fixture(scope="module")
def base(k8s_copy: Path) -> list[dict[str, Any]]:
    return kustomize_build(k8s_copy / "base")


@pytest.fixture(scope="module")
def production(k8s_copy: Path) -> list[dict[str, Any]]:
    return kustomize_build(k8s_copy / "overlays" / "production")


def policies_of(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in rendered if doc["kind"] == "NetworkPolicy"]


def assert_selectors_are_real(rendered: list[dict[str, Any]]) -> None:
    """Every selector of a pod in this namespace selects a rendered pod; every selector of another
    namespace is one the header of network-policies.yaml documents."""
    pods = list(workload_pods(rendered).values())
    assumed = {
        (INGRESS_NAMESPACE, tuple(INGRESS_CONTROLLER.items())),
        (MONITORING_NAMESPACE, ()),
        ("kube-system", tuple(DNS.items())),
    }
    for policy in policies_of(rendered):
        name = policy["metadata"]["name"]
        assert policy["metadata"]["namespace"] == NAMESPACE, name
        spec = policy["spec"]
        if spec["podSelector"]:
            assert any(selects(spec["podSelector"], p.labels) for p in pods), f"{name} selects none"
        rules = spec.get("ingress", []) + spec.get("egress", [])
        for peer in [peer for rule in rules for peer in rule.get("from", rule.get("to", []))]:
            if "ipBlock" in peer:
                continue
            if "namespaceSelector" not in peer:
                assert peer["podSelector"], f"{name}: an empty podSelector allows the namespace"
                matched = [p for p in pods if selects(peer["podSelector"], p.labels)]
                assert matched, f"{name}: {peer['podSelector']} matches no pod"
                continue
            namespace_labels = peer["namespaceSelector"].get("matchLabels", {})
            assert set(namespace_labels) == {NS_NAME}, f"{name}: {peer}"
            pod_labels = peer.get("podSelector", {}).get("matchLabels", {})
            assert (namespace_labels[NS_NAME], tuple(pod_labels.items())) in assumed, name


def test_base_denies_by_default(base: list[dict[str, Any]]) -> None:
    (deny,) = [p for p in policies_of(base) if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pods = workload_pods(base)
    assert set(pods) == {"gateway", "persister", "redis", "mysql"}
    cluster = Cluster(policies_of(base))
    for pod in pods.values():  # every pod is isolated both ways
        assert cluster._governing(pod, "Ingress") and cluster._governing(pod, "Egress"), pod.name


def test_base_selectors_match_real_pods(base: list[dict[str, Any]]) -> None:
    assert_selectors_are_real(base)


def test_base_allows_exactly_the_intended_connections(base: list[dict[str, Any]]) -> None:
    pods = workload_pods(base)
    assert pods["persister"].labels[NAME] == "persister"
    assert [c["name"] for c in _template(base, "persister")["initContainers"]] == ["migrate"]
    cluster = Cluster(policies_of(base))
    everyone = [*pods.values(), CONTROLLER, PROMETHEUS, KUBE_DNS, *STRANGERS]
    dns = {(53, "UDP"), (53, "TCP")}
    assert allowed_connections(cluster, everyone) == {
        # The data stores: from the gateways and the persisters (their migrate init container).
        ("gateway", "redis", 6379, "TCP"),
        ("persister", "redis", 6379, "TCP"),
        ("gateway", "mysql", 3306, "TCP"),
        ("persister", "mysql", 3306, "TCP"),
        # Clients through the ingress controller; Prometheus scrapes /metrics.
        ("ingress-nginx-controller", "gateway", 8000, "TCP"),
        ("prometheus", "gateway", 8000, "TCP"),
        ("prometheus", "persister", 8001, "TCP"),
        # Name resolution.
        *{
            (source, "coredns", port, protocol)
            for source in ("gateway", "persister")
            for port, protocol in dns
        },
    }
    # Nothing leaves for the internet or the cloud's metadata service.
    for pod in pods.values():
        for address, port in [("8.8.8.8", 443), ("169.254.169.254", 80), ("10.1.2.3", 6379)]:
            assert not cluster.ip_allowed(pod, address, port), (pod.name, address)


def test_the_data_stores_admit_only_gateways_and_persisters(base: list[dict[str, Any]]) -> None:
    pods = workload_pods(base)
    cluster = Cluster(policies_of(base))
    for store in ("redis", "mysql"):
        governing = cluster._governing(pods[store], "Ingress")
        assert governing, f"no policy selects {store}"
        for policy in governing:
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']}: a rule open to all"
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, peer  # this namespace's pods only
                    matched = {n for n, p in pods.items() if selects(peer["podSelector"], p.labels)}
                    assert matched and matched <= {"gateway", "persister"}, matched
        # It opens no connection: only default-deny governs its egress.
        egress = cluster._governing(pods[store], "Egress")
        assert [p["metadata"]["name"] for p in egress] == ["default-deny"], store


def test_policy_ports_are_the_containers_ports(base: list[dict[str, Any]]) -> None:
    pods = workload_pods(base)
    by_label = {p.labels[NAME]: p for p in pods.values()}
    for policy in policies_of(base):
        spec = policy["spec"]
        targets = [
            p
            for p in pods.values()
            if spec["podSelector"] and selects(spec["podSelector"], p.labels)
        ]
        for rule in spec.get("ingress", []):
            for entry in rule.get("ports", []):
                for pod in targets:
                    assert (entry["port"], entry["protocol"]) in pod.ports, (policy, pod.name)
        for rule in spec.get("egress", []):
            for peer in rule.get("to", []):
                target = by_label.get(peer.get("podSelector", {}).get("matchLabels", {}).get(NAME))
                if target is None or "namespaceSelector" in peer:
                    continue
                for entry in rule["ports"]:
                    assert (entry["port"], entry["protocol"]) in target.ports, (policy, target.name)


def test_production_reaches_only_its_managed_stores(production: list[dict[str, Any]]) -> None:
    assert_selectors_are_real(production)
    names = {p["metadata"]["name"] for p in policies_of(production)}
    assert names == {"default-deny", "gateway", "persister", "dns", "managed-data-stores"}
    pods = workload_pods(production)
    assert set(pods) == {"gateway", "persister"}
    cluster = Cluster(policies_of(production))
    everyone = [*pods.values(), CONTROLLER, PROMETHEUS, KUBE_DNS, *STRANGERS]
    assert allowed_connections(cluster, everyone) == {
        ("ingress-nginx-controller", "gateway", 8000, "TCP"),
        ("prometheus", "gateway", 8000, "TCP"),
        ("prometheus", "persister", 8001, "TCP"),
        *{
            (source, "coredns", 53, protocol)
            for source in ("gateway", "persister")
            for protocol in ("UDP", "TCP")
        },
    }
    for pod in pods.values():
        # The managed endpoints (private addresses, their ports) and nothing else.
        for port in (6379, 6380, 3306):
            assert cluster.ip_allowed(pod, "10.20.30.40", port), (pod.name, port)
            assert cluster.ip_allowed(pod, "192.168.1.5", port), (pod.name, port)
        assert not cluster.ip_allowed(pod, "10.20.30.40", 22)
        assert not cluster.ip_allowed(pod, "8.8.8.8", 6379)
        assert not cluster.ip_allowed(pod, "169.254.169.254", 80)


def _template(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (doc,) = [
        d
        for d in rendered
        if d["kind"] in {"Deployment", "StatefulSet"} and d["metadata"]["name"] == name
    ]
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def test_the_model_follows_the_api_semantics() -> None:
    """The evaluator itself, on hand-made policies whose answers the API documentation gives."""
    a = Pod("a", NAMESPACE, {"role": "a"}, frozenset({(1, "TCP")}))
    b = Pod("b", NAMESPACE, {"role": "b"}, frozenset({(1, "TCP")}))
    c = Pod("c", "other", {"role": "a"}, frozenset({(1, "TCP")}))

    def policy(spec: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": NAMESPACE}, "spec": spec}

    assert Cluster([]).connects(a, b, 1, "TCP")  # nothing selects b: open
    only_a = policy(
        {
            "podSelector": {"matchLabels": {"role": "b"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "a"}}}]}],
        }
    )
    cluster = Cluster([only_a])
    assert cluster.connects(a, b, 1, "TCP")
    assert not cluster.connects(c, b, 1, "TCP")  # podSelector alone: the policy's namespace
    assert cluster.connects(b, a, 1, "TCP")  # a is not isolated
    both = policy(
        {
            "podSelector": {"matchLabels": {"role": "b"}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {NS_NAME: "other"}},
                            "podSelector": {"matchLabels": {"role": "a"}},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 2}],
                }
            ],
        }
    )
    assert not Cluster([both]).connects(c, b, 1, "TCP")  # wrong port
    c2 = Pod("c2", "other", {"role": "a"}, frozenset({(2, "TCP")}))
    b2 = Pod("b2", NAMESPACE, {"role": "b"}, frozenset({(2, "TCP")}))
    assert Cluster([both]).connects(c2, b2, 2, "TCP")
    assert not Cluster([both]).connects(a, b2, 2, "TCP")  # right labels, wrong namespace
    deny = policy({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    assert not Cluster([deny, only_a]).connects(a, b, 1, "TCP")  # a may not send any more
