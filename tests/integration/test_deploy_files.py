"""The deployment files, checked offline: no Docker engine, no cluster, no network.

docker-compose.yml against the compose spec, the Dockerfile's shape, every manifest under k8s/
against the Kubernetes 1.30 schemas (and, where kubectl is installed, as kustomize renders it),
the ingress annotations against the nginx template, and the template itself through `nginx -t`.
Redis logins: every Redis client gets its credentials from .env / the Secret, Redis starts with
the same ACL users in compose and k8s, and no real password is committed
(tests/integration/test_redis_auth.py runs that ACL; test_network_policies.py the policies).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from yamllint import linter
from yamllint.config import YamlLintConfig

from shared.config import Settings
from tests.conftest import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
TEMPLATE = ROOT / "nginx" / "templates" / "chat.conf.template"
K8S_VERSION = "1.30.0"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|_AUTH$", re.IGNORECASE)
# ${VAR}, ${VAR:?message}, ${VAR?message}, or ${VAR:-} (empty default): never a literal value.
REFERENCE = re.compile(r"\$\{([A-Za-z_]\w*)(?::?\?[^}]*|:?-)?\}")
CHAT_VARIABLES = {f"CHAT_{name.upper()}" for name in Settings.model_fields}
REDIS_SERVICES = {"gateway", "persister"}  # each logs in to Redis as the ACL user of its name
# A password committed in an example or template must say so.
PLACEHOLDER = re.compile(r"change[-_]me", re.IGNORECASE)
KUBELET_REFERENCE = re.compile(r"\$\((\w+)\)")  # $(VAR) in a container's args or env values

# Ingress annotation -> (nginx directive in the template, how its value reads as an annotation).
INGRESS_EQUIVALENTS = {
    "proxy-read-timeout": ("proxy_read_timeout", lambda v: v.removesuffix("s")),
    "proxy-send-timeout": ("proxy_send_timeout", lambda v: v.removesuffix("s")),
    "proxy-connect-timeout": ("proxy_connect_timeout", lambda v: v.removesuffix("s")),
    "proxy-body-size": ("client_max_body_size", lambda v: v),
    "proxy-buffering": ("proxy_buffering", lambda v: v),
    "proxy-next-upstream": ("proxy_next_upstream", lambda v: v),
}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_yaml_files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def manifest_files() -> list[Path]:
    """Kubernetes objects: every YAML file under k8s/ except kustomize's own files."""
    return [p for p in k8s_yaml_files() if p.name != "kustomization.yaml"]


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """The base's objects by (kind, name), as listed in its kustomization."""
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    objects = {}
    for resource in listed:
        for doc in load_docs(BASE / resource):
            objects[doc["kind"], doc["metadata"]["name"]] = doc
    return objects


def pod_specs(objects: dict[tuple[str, str], dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for (kind, name), obj in objects.items():
        if kind in {"Deployment", "StatefulSet"}:
            yield name, obj["spec"]["template"]["spec"]


def parse_duration_s(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", value)
    assert match and value, f"unsupported duration {value!r}"
    return int(match[1] or 0) * 60 + float(match[2] or 0)


def placeholders(value: str) -> str:
    """``${VAR...}`` references as ``__VAR__``, so a URL holding them parses like a real one."""
    return REFERENCE.sub(r"__\1__", value)


def acl_users(args: list[str]) -> dict[str, list[str]]:
    """The ``--user NAME RULE...`` directives of a redis-server command line, by user name."""
    users: dict[str, list[str]] = {}
    current: list[str] | None = None
    for arg in args:
        if arg.startswith("--"):
            current = [] if arg == "--user" else None
        elif current is not None:
            if not current:
                users[arg] = current
            current.append(arg)
    return {name: rules[1:] for name, rules in users.items()}


def password_rules(rules: list[str]) -> list[str]:
    return [rule[1:] for rule in rules if rule.startswith((">", "#"))]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_healthy_before_their_dependents(compose: dict[str, Any]) -> None:
    services = compose["services"]
    core = {"nginx", "gateway", "migrate", "persister", "redis", "mysql"}
    assert set(services) == core | {"prometheus", "grafana"}
    # The monitoring services start only with `--profile monitoring` (test_monitoring_files.py).
    assert {name for name in services if "profiles" in services[name]} == {"prometheus", "grafana"}
    one_shot = {"migrate"}  # runs to completion: its dependents wait for its success
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            expected = (
                "service_completed_successfully" if dependency in one_shot else "service_healthy"
            )
            assert condition == {"condition": expected}, (name, dependency)
    assert set(services["nginx"]["depends_on"]) == {"gateway"}
    assert set(services["gateway"]["depends_on"]) == {"redis", "mysql"}
    assert set(services["persister"]["depends_on"]) == {"redis", "mysql", "migrate"}
    for name in ("gateway", "persister"):
        # The slim image has no curl: its checks are Python one-liners against its own port.
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        port = env_of(services[name])["CHAT_PORT" if name == "gateway" else "CHAT_PERSISTER_PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in test[3]


def test_compose_gateway_scales_and_drains(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert "container_name" not in gateway
    assert "ports" not in gateway, "a fixed host port would stop `--scale gateway=3`"
    assert gateway["command"] == ["python", "-m", "gateway"]
    assert parse_duration_s(gateway["stop_grace_period"]) >= 10
    env = env_of(gateway)
    assert env["CHAT_HOST"] == "0.0.0.0"
    assert parse_duration_s(gateway["stop_grace_period"]) > float(env["CHAT_SHUTDOWN_GRACE_S"]) + 1
    assert compose["services"]["persister"]["command"] == ["python", "-m", "persister"]
    for name in ("gateway", "persister"):
        env = env_of(compose["services"][name])
        assert env["CHAT_BROKER"] == "redis"
        redis_url = urlsplit(placeholders(env["CHAT_REDIS_URL"]))
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
        assert redis_url.username == name
        assert redis_url.password == f"__REDIS_{name.upper()}_PASSWORD__"
        url = urlsplit(placeholders(env["CHAT_DATABASE_URL"]))
        assert (url.scheme, url.hostname, url.port) == ("mysql+pymysql", "mysql", 3306)
        assert (url.username, url.password) == ("__MYSQL_USER__", "__MYSQL_PASSWORD__")
        assert url.query == "charset=utf8mb4"


def test_compose_nginx_uses_the_one_template(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "./nginx/templates:/etc/nginx/templates:ro" in nginx["volumes"]
    assert nginx["ports"] == ["8080:80"]
    env = env_of(nginx)
    assert env["CHAT_UPSTREAM_SERVERS"] == "server gateway:8000;"
    assert env["CHAT_LISTEN_PORT"] == "80"
    assert env["CHAT_ACCESS_LOG"] == "/dev/stdout"


def test_compose_redis_is_durable_and_never_evicts(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/mysql") for v in compose["services"]["mysql"]["volumes"])
    assert "--character-set-server=utf8mb4" in compose["services"]["mysql"]["command"]


def test_compose_has_no_literal_secrets(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.fullmatch(value), f"{name}: {key} must be a ${{...}} reference"
                assert ":-}" not in value or key == "CHAT_AUTH_SECRET", f"{name}: {key} default"
            if "://" in value:
                password = urlsplit(placeholders(value)).password
                assert password is None or re.fullmatch(r"__\w+__", password), f"{name}: {key}"


def test_compose_redis_wants_a_login_from_env(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = services["redis"]
    users = acl_users(redis["command"])
    assert set(users) == {"default"} | REDIS_SERVICES
    variables = {}
    for name, rules in users.items():
        assert rules[:2] == ["reset", "on"], name  # nothing inherited from Redis's defaults
        assert "nopass" not in rules, name
        (password,) = password_rules(rules)
        reference = REFERENCE.fullmatch(password)
        assert reference and ":?" in password, f"{name}: a required ${{...}}, never a literal"
        variables[name] = reference[1]
    assert len(set(variables.values())) == len(variables), "one password per user"
    assert not any(arg.startswith("--requirepass") for arg in redis["command"])
    # redis-cli (the health check, operators) logs in as `default` with REDISCLI_AUTH.
    admin = REFERENCE.fullmatch(env_of(redis)["REDISCLI_AUTH"])
    assert admin and admin[1] == variables["default"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])

    # Every service that talks to Redis logs in as its own user with that user's password.
    clients = {name for name, s in services.items() if "CHAT_REDIS_URL" in env_of(s)}
    assert clients == REDIS_SERVICES
    for name in clients:
        url = urlsplit(placeholders(env_of(services[name])["CHAT_REDIS_URL"]))
        assert (url.username, url.password) == (name, f"__{variables[name]}__"), name

    # The same users and rules as the k8s StatefulSet (passwords aside).
    (statefulset,) = load_docs(BASE / "redis-statefulset.yaml")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    k8s_users = acl_users(container["args"])

    def without_passwords(all_users: dict[str, list[str]]) -> dict[str, list[str]]:
        return {n: [r for r in rules if r[0] not in ">#"] for n, rules in all_users.items()}

    assert without_passwords(k8s_users) == without_passwords(users)


def test_compose_data_stores_are_on_an_internal_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert compose["networks"]["data"] == {"internal": True}
    on_data = {name for name, s in services.items() if "data" in s.get("networks", [])}
    assert on_data == REDIS_SERVICES | {"migrate", "redis", "mysql"}
    for store in ("redis", "mysql"):
        assert services[store]["networks"] == ["data"], store
        assert "ports" not in services[store], f"{store} must not be published on the host"


def test_env_example_has_placeholders_and_generates_real_values(tmp_path: Path) -> None:
    text = (ROOT / ".env.example").read_text()
    values = dict(re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE))
    secret = {key for key in values if SECRET_NAME.search(key)}
    assert {"REDIS_ADMIN_PASSWORD", "REDIS_GATEWAY_PASSWORD", "REDIS_PERSISTER_PASSWORD"} <= secret
    for key in secret:
        assert PLACEHOLDER.search(values[key]), f"{key}: an obvious placeholder, not a value"

    # The generator the file's header shows, run as written on a copy.
    lines = [line.removeprefix("#   ") for line in text.splitlines() if line.startswith("#   ")]
    script = "\n".join(lines[lines.index("cp .env.example .env") :])
    assert shutil.which("openssl"), "openssl is needed to check the generator"
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    result = subprocess.run(["bash", "-ec", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    generated = dict(re.findall(r"^(\w+)=(.*)$", (tmp_path / ".env").read_text(), re.MULTILINE))
    assert {key for key in secret if re.fullmatch(r"[0-9a-f]{64}", generated[key])} == secret
    assert len({generated[key] for key in secret}) == len(secret), "each value its own"
    assert {k: v for k, v in generated.items() if k not in secret} == {
        k: v for k, v in values.items() if k not in secret
    }


def test_committed_secret_templates_hold_only_placeholders() -> None:
    templates = {
        "secret.example.yaml": load_docs(BASE / "secret.example.yaml")[0]["stringData"],
        "secrets.env.example": dict(
            re.findall(r"^(\w+)=(.*)$", (PRODUCTION / "secrets.env.example").read_text(), re.M)
        ),
    }
    for name, values in templates.items():
        assert {"REDIS_GATEWAY_PASSWORD", "REDIS_PERSISTER_PASSWORD"} <= set(values), name
        for key, value in values.items():
            if "://" in value:
                password = urlsplit(value).password
                assert password is None or PLACEHOLDER.search(password), f"{name}: {key}"
            elif SECRET_NAME.search(key):
                assert PLACEHOLDER.search(value), f"{name}: {key} is not a placeholder"


def test_compose_variables_are_documented(compose: dict[str, Any]) -> None:
    referenced = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert referenced <= documented, f"missing from .env.example: {referenced - documented}"
    for name in ("gateway", "persister"):
        chat_keys = {k for k in env_of(compose["services"][name]) if k.startswith("CHAT_")}
        assert chat_keys <= CHAT_VARIABLES, f"not settings: {chat_keys - CHAT_VARIABLES}"


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_is_slim_multistage_and_non_root() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    assert parser.is_multistage
    assert set(parser.parent_images) == {"python:3.11-slim"}
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    last_from = max(n for n, (kind, _) in enumerate(instructions) if kind == "FROM")
    users = [value for kind, value in instructions[last_from:] if kind == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any(k == "RUN" and "pip install --no-cache-dir ." in v for k, v in instructions)
    assert any(k == "COPY" and v.startswith("--from=build") for k, v in instructions[last_from:])
    assert parser.cmd == '["python", "-m", "gateway"]'
    exposed = {v for k, value in instructions if k == "EXPOSE" for v in value.split()}
    assert {"8000", "8001"} <= exposed
    for kind, value in instructions:
        if kind == "ARG":
            names = [value.split("=", 1)[0]]
        elif kind == "ENV":
            tokens = shlex.split(value)
            has_pairs = any("=" in t for t in tokens)
            names = [t.split("=", 1)[0] for t in tokens if "=" in t] if has_pairs else tokens[:1]
        else:
            continue
        for name in names:
            assert not SECRET_NAME.search(name), f"{kind} {name}: secrets come at run time"


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    expected = {".venv", "data", ".stack", "tests", "test-artifacts", "bench/results", ".git"}
    assert expected | {".env"} <= patterns


# --- YAML hygiene ---------------------------------------------------------------------------------


def test_yaml_files_pass_yamllint() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    problems = []
    for path in [COMPOSE, ROOT / ".yamllint.yaml", *k8s_yaml_files()]:
        for problem in linter.run(path.read_text(), config, str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{problem.line}: {problem}")
    assert not problems, "\n".join(problems)


# --- Kubernetes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_matches_the_kubernetes_schema(path: Path) -> None:
    docs = load_docs(path)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # Prometheus Operator CRDs (k8s/overlays/monitoring) have no schema here: they are
            # checked in tests/unit/test_monitoring_files.py instead.
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_references_exist(path: Path) -> None:
    kustomization = yaml.safe_load(path.read_text())
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (path.parent / resource).exists(), f"{path}: {resource} is missing"
    for generator in kustomization.get("secretGenerator", []):
        for env_file in generator.get("envs", []):
            # Real secrets are never committed: an example stands beside a git-ignored file.
            assert (path.parent / f"{env_file}.example").is_file()
            ignored = (path.parent / ".gitignore").read_text().split()
            assert env_file in ignored


def test_base_is_complete_and_consistent() -> None:
    objects = base_objects()
    kinds = {kind for kind, _ in objects}
    assert {"Namespace", "ConfigMap", "Service", "Deployment", "StatefulSet"} <= kinds
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"} <= kinds
    assert not any(kind == "Secret" for kind, _ in objects), "secrets are applied separately"

    config = objects["ConfigMap", "chat-config"]["data"]
    assert set(config) <= CHAT_VARIABLES, f"not settings: {set(config) - CHAT_VARIABLES}"
    assert config["CHAT_HOST"] == "0.0.0.0"
    assert config["CHAT_BROKER"] == "redis"
    assert not any(SECRET_NAME.search(key) for key in config)

    workloads = {name: obj for (kind, name), obj in objects.items() if kind.endswith("Set")}
    workloads |= {name: obj for (kind, name), obj in objects.items() if kind == "Deployment"}
    for name, obj in workloads.items():
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items(), name
    for (kind, name), obj in objects.items():
        if kind == "Service":
            selector = obj["spec"]["selector"].items()
            targets = [
                w
                for w in workloads.values()
                if selector <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert targets, f"Service {name} selects nothing"
        if kind == "StatefulSet":
            assert ("Service", obj["spec"]["serviceName"]) in objects
            assert obj["spec"]["volumeClaimTemplates"]

    hpa = objects["HorizontalPodAutoscaler", "gateway"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = objects["PodDisruptionBudget", "gateway"]["spec"]
    assert pdb["selector"] == objects["Deployment", "gateway"]["spec"]["selector"]

    secret_keys = set(load_docs(BASE / "secret.example.yaml")[0]["stringData"])
    for name, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in objects
                else:
                    assert source["secretRef"]["name"] == "chat-secrets"
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "chat-secrets" and ref["key"] in secret_keys, env
                assert not (SECRET_NAME.search(env["name"]) and "value" in env), env


@pytest.mark.parametrize("name", ["gateway", "persister"])
def test_services_have_probes_and_read_only_roots(name: str) -> None:
    deployment = base_objects()["Deployment", name]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "chat-backend:latest"
    assert container["command"] == ["python", "-m", name]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    port = container["ports"][0]["containerPort"]
    assert port == (8000 if name == "gateway" else 8001)
    assert spec["terminationGracePeriodSeconds"] == 30
    env = {e["name"]: e for e in container["env"]}
    id_variable = "CHAT_GATEWAY_ID" if name == "gateway" else "CHAT_PERSISTER_ID"
    assert env[id_variable]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    if name == "gateway":
        assert "replicas" not in deployment["spec"], "the HPA owns the gateway count"
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    else:
        assert deployment["spec"]["replicas"] == 2


def test_ingress_annotations_match_the_nginx_template() -> None:
    directives = dict(re.findall(r"^\s*([a-z_]+)\s+([^;{]+);", TEMPLATE.read_text(), re.MULTILINE))
    ingress = base_objects()["Ingress", "chat"]
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    for annotation, (directive, as_annotation) in INGRESS_EQUIVALENTS.items():
        assert annotations[prefix + annotation] == as_annotation(directives[directive].strip())
    assert annotations[prefix + "proxy-read-timeout"] == "3600"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = base_objects()["Service", backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """k8s/ in a temp dir, with secrets.env filled from its example (never in the work tree)."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    example = copy / PRODUCTION.relative_to(K8S) / "secrets.env.example"
    shutil.copy(example, example.with_suffix(""))
    return copy


def test_kustomize_renders_valid_base(k8s_copy: Path) -> None:
    rendered = kustomize_build(k8s_copy / "base")
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "chat", doc["metadata"]["name"]
    assert {d["kind"] for d in rendered} >= {
        "StatefulSet",
        "Deployment",
        "Ingress",
        "NetworkPolicy",
    }
    secret_keys = assert_redis_clients_log_in_from_the_secret(rendered, "chat-secrets")

    # The in-cluster Redis defines the users with the same Secret keys.
    (redis,) = [
        d for d in rendered if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "redis"
    ]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    from_secret = secret_variables(container, "chat-secrets")
    users = acl_users(container["args"])
    assert set(users) == {"default"} | REDIS_SERVICES
    for user, rules in users.items():
        assert rules[:2] == ["reset", "on"] and "nopass" not in rules, user
        (password,) = password_rules(rules)
        reference = KUBELET_REFERENCE.fullmatch(password)
        assert reference and reference[1] in from_secret, f"{user}: not from the Secret"
        if user in REDIS_SERVICES:
            assert from_secret[reference[1]] == secret_keys[user], user
    # redis-cli (the probe, operators) logs in as `default` through REDISCLI_AUTH.
    assert password_rules(users["default"]) == ["$(REDISCLI_AUTH)"]
    assert "redis-cli" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert "REDISCLI_AUTH" in from_secret


def secret_variables(container: dict[str, Any], secret: str) -> dict[str, str]:
    """A container's environment variables set from ``secret``: variable -> key."""
    variables = {}
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret, env
            variables[env["name"]] = ref["key"]
    return variables


def assert_redis_clients_log_in_from_the_secret(
    rendered: list[dict[str, Any]], secret: str
) -> dict[str, str]:
    """Every container that runs a gateway or a persister builds CHAT_REDIS_URL from a password
    in ``secret``, as the Redis user of its name; nothing else holds a Redis URL. Returns
    service -> the Secret key of its password."""
    keys = {}
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            assert "CHAT_REDIS_URL" not in doc["data"], "each Deployment sets its own"
        if doc["kind"] == "Secret":
            assert "CHAT_REDIS_URL" not in doc.get("data", {}), "a Deployment's env would win"
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            command = container.get("command", [])
            service = command[2] if command[:2] == ["python", "-m"] and command[3:] == [] else None
            env = container.get("env", [])
            names = [e["name"] for e in env]
            if service is None:  # redis, mysql, and the migrate init container: no Redis client
                assert "CHAT_REDIS_URL" not in names, container["name"]
                continue
            assert service in REDIS_SERVICES
            url_value = env[names.index("CHAT_REDIS_URL")]["value"]
            (variable,) = KUBELET_REFERENCE.findall(url_value)
            # kubelet expands $(VAR) only from variables defined before it.
            assert names.index(variable) < names.index("CHAT_REDIS_URL"), service
            from_secret = secret_variables(container, secret)
            assert variable in from_secret, f"{service}: the password is not from the Secret"
            assert from_secret[variable] == f"REDIS_{service.upper()}_PASSWORD"
            url = urlsplit(url_value)
            assert url.scheme in {"redis", "rediss"}, service
            assert (url.username, url.password) == (service, f"$({variable})"), service
            keys[service] = from_secret[variable]
    assert set(keys) == REDIS_SERVICES
    return keys


def test_kustomize_renders_production_with_managed_services(k8s_copy: Path) -> None:
    rendered = kustomize_build(k8s_copy / "overlays" / "production")
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in rendered:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert "StatefulSet" not in by_kind
    assert {s["metadata"]["name"] for s in by_kind["Service"]} == {"gateway"}
    (secret,) = by_kind["Secret"]
    assert secret["metadata"]["name"].startswith("chat-secrets-")
    assert {"CHAT_DATABASE_URL", "REDIS_GATEWAY_PASSWORD", "REDIS_PERSISTER_PASSWORD"} <= set(
        secret["data"]
    )
    assert_redis_clients_log_in_from_the_secret(rendered, secret["metadata"]["name"])
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] >= 3
    for deployment in by_kind["Deployment"]:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] != "chat-backend:latest"
        refs = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert refs == {secret["metadata"]["name"]}
        # The managed Redis, over TLS, not the deleted in-cluster one.
        url = urlsplit(next(e["value"] for e in container["env"] if e["name"] == "CHAT_REDIS_URL"))
        assert url.scheme == "rediss" and url.hostname != "redis"


# --- nginx ----------------------------------------------------------------------------------------


def render_template(text: str, env: dict[str, str]) -> str:
    """What the nginx image's envsubst step does: replace only the defined (filtered) variables."""
    allowed = re.compile(env.get("NGINX_ENVSUBST_FILTER", ""))
    defined = {k: v for k, v in env.items() if allowed.search(k)}

    def substitute(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        return defined.get(name, match[0])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, text)


def test_nginx_template_renders_and_passes_nginx_t(compose: dict[str, Any], tmp_path: Path) -> None:
    env = env_of(compose["services"]["nginx"])
    template = TEMPLATE.read_text()
    variables = set(re.findall(r"\$\{(\w+)\}", template))
    assert variables == {k for k in env if k.startswith("CHAT_")}, "template and compose differ"
    rendered = render_template(template, env)
    assert "${" not in rendered
    assert "server gateway:8000;" in rendered
    assert "$http_upgrade" in rendered, "nginx's own variables must survive envsubst"

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (make system-deps installs it)"
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "chat.conf").write_text(rendered)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off;\nuser root;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log {tmp_path / 'access.log'};\n{temp_paths}\n"
        f"    include {tmp_path / 'conf.d' / 'chat.conf'};\n}}\n"
    )
    # `gateway` is a compose service name: resolve it to loopback in private namespaces only.
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 gateway\n")
    script = (
        'ip link set lo up; mount --bind "$1" /etc/hosts && exec "$2" -t -c "$3" -p "$4" -e "$5"'
    )
    arguments = [str(hosts), nginx, str(main), f"{tmp_path}/", str(tmp_path / "error.log")]
    result = subprocess.run(
        ["unshare", "-m", "-n", "sh", "-c", script, "sh", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test is successful" in result.stderr
