"""The shipped Kubernetes policies: they validate without a warning, cover the server's
tools, and decide under `mcpwall check` the way their comments say; and in front of the
real server, what they deny never reaches it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpwall.catalog.classify import Category
from mcpwall.catalog.entries import find_server
from mcpwall.policy import load_policy
from tests.catalog.helpers import ALL_TOOLSETS, POLICIES, kubernetes_command, mcpwall
from tests.e2e.sdk import agent, text, through_mcpwall

MAIN = POLICIES / "kubernetes.yaml"
READONLY = POLICIES / "kubernetes-readonly.yaml"
CATALOGUE = find_server("kubernetes")

SECRET_SPELLINGS = ["secret", "Secret", "secrets", "Secrets", "SECRET", "sEcReT", " Secret "]

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\n"
POD = {"apiVersion": "v1", "kind": "Pod", "name": "web"}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w", "namespace": "team-a"}
VIRTUAL_SERVICE = {"group": "networking.istio.io", "version": "v1", "object": "r"}
JSON_SECRET = '{"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "team-a"}}'
CLONE = CONFIGMAP.replace(
    "v1\nkind: ConfigMap", "clone.kubevirt.io/v1beta1\nkind: VirtualMachineClone"
)


def manifest(kind: str = "ConfigMap", namespace: str = "team-a") -> dict[str, str]:
    return {"resource": CONFIGMAP.replace("ConfigMap", kind).format(ns=namespace)}


def denied(rule: str) -> tuple[bool, str]:
    return (False, rule)


ALLOWED = (True, None)


def decide(policy: Path, tool: str, args: dict[str, Any]) -> tuple[bool, str | None]:
    result = mcpwall(
        "check", "-c", str(policy), tool, "--args", json.dumps(args), "--format", "json",
        "--state-dsn", "memory:",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    body = json.loads(result.stdout)
    assert body["allowed"] is (result.returncode == 0)
    return body["allowed"], body["rule"]


@pytest.mark.parametrize("policy", [MAIN, READONLY], ids=["main", "readonly"])
def test_the_policy_validates_without_a_warning(policy: Path) -> None:
    result = mcpwall("validate", "-c", str(policy))
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1 and ": valid: " in result.stdout


@pytest.mark.parametrize("policy", [MAIN, READONLY], ids=["main", "readonly"])
@pytest.mark.parametrize("tool", ["resources_get", "resources_list"])
@pytest.mark.parametrize("kind", SECRET_SPELLINGS)
def test_no_secret_kind_in_any_spelling(policy: Path, tool: str, kind: str) -> None:
    args = {"apiVersion": "v1", "kind": kind, "name": "db", "namespace": "team-a"}
    assert decide(policy, tool, args) == denied("no Secrets")


MAIN_DECISIONS: list[tuple[str, dict[str, Any], tuple[bool, str | None]]] = [
    # reads of other kinds, in allowed namespaces only
    ("resources_get", {**POD, "namespace": "team-a"}, ALLOWED),
    ("resources_get", POD, denied("allowed namespaces")),
    (
        "resources_get",
        {"apiVersion": "/v1", "kind": "ConfigMap", "name": "c", "namespace": "kube-system"},
        denied("allowed namespaces"),
    ),
    (
        "resources_list",
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-a-dev"},
        ALLOWED,
    ),
    # pods_exec: never in system namespaces, never without a namespace
    (
        "pods_exec",
        {"namespace": "kube-system", "name": "p", "command": ["sh"]},
        denied("no system namespaces"),
    ),
    (
        "pods_exec",
        {"namespace": "openshift-monitoring", "name": "p", "command": ["ls"]},
        denied("no system namespaces"),
    ),
    ("pods_exec", {"name": "p", "command": ["ls"]}, denied("no system namespaces")),
    (
        "pods_exec",
        {"namespace": "payments", "name": "p", "command": ["ls"]},
        denied("allowed namespaces"),
    ),
    ("pods_exec", {"namespace": "team-a", "name": "p", "command": ["ls"]}, ALLOWED),
    # vm_clone: only into VM sandboxes, never production sources
    ("vm_clone", {"namespace": "vm-sandbox", "name": "web", "targetName": "web-2"}, ALLOWED),
    (
        "vm_clone",
        {"namespace": "team-a", "name": "web", "targetName": "web-2"},
        denied("clone only in VM sandboxes"),
    ),
    ("vm_clone", {"name": "web", "targetName": "web-2"}, denied("clone only in VM sandboxes")),
    (
        "vm_clone",
        {"namespace": "vm-sandbox", "name": "prod-db", "targetName": "copy"},
        denied("protected sources"),
    ),
    # no credentials from configuration_view, in either mode
    ("configuration_view", {}, denied("(hidden)")),
    ("configuration_view", {"minified": True}, denied("(hidden)")),
    # cluster-wide reads steered to a namespace
    ("pods_list", {}, denied("pods_list[0] deny")),
    ("pods_top", {}, denied("allowed namespaces")),
    ("pods_top", {"namespace": "team-a"}, ALLOWED),
    ("pods_top", {"namespace": "team-a", "all_namespaces": True}, denied("not cluster-wide")),
    ("pods_top", {"namespace": "team-a", "all_namespaces": False}, ALLOWED),
    ("events_list", {}, denied("allowed namespaces")),
    ("pods_delete", {"name": "web-1", "namespace": "team-a"}, ALLOWED),
    ("pods_delete", {"name": "web-1"}, denied("allowed namespaces")),
    # scale: reading is fine, zero and large counts are not, a string count cannot be told
    ("resources_scale", DEPLOYMENT, ALLOWED),
    ("resources_scale", {**DEPLOYMENT, "scale": 3}, ALLOWED),
    ("resources_scale", {**DEPLOYMENT, "scale": 0}, denied("no scale to zero")),
    ("resources_scale", {**DEPLOYMENT, "scale": 50}, denied("at most 10 replicas")),
    ("resources_scale", {**DEPLOYMENT, "scale": "3"}, denied("no scale to zero")),
    # deletes: workload kinds in allowed namespaces, gracefully
    (
        "resources_delete",
        {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "team-a"},
        ALLOWED,
    ),
    (
        "resources_delete",
        {"apiVersion": "v1", "kind": "Secret", "name": "db", "namespace": "team-a"},
        denied("workload kinds in allowed namespaces"),
    ),
    (
        "resources_delete",
        {"apiVersion": "v1", "kind": "Namespace", "name": "prod", "namespace": ""},
        denied("workload kinds in allowed namespaces"),
    ),
    (
        "resources_delete",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "p",
            "namespace": "team-a",
            "gracePeriodSeconds": 0,
        },
        denied("graceful only"),
    ),
    # manifests: read as the server reads them
    ("resources_create_or_update", manifest(), ALLOWED),
    (
        "resources_create_or_update",
        manifest(namespace="team-a-evil"),
        denied("allowed namespaces"),
    ),
    (
        "resources_create_or_update",
        manifest(namespace="kube-system"),
        denied("allowed namespaces"),
    ),
    ("resources_create_or_update", manifest("secret"), denied("no sensitive kinds")),
    ("resources_create_or_update", {"resource": JSON_SECRET}, denied("no sensitive kinds")),
    ("resources_create_or_update", manifest("ClusterRoleBinding"), denied("no sensitive kinds")),
    (
        "resources_create_or_update",
        {"resource": CLONE.format(ns="team-a")},
        denied("no sensitive kinds"),
    ),
    (
        "resources_create_or_update",
        {"resource": '{"kind": "\\u0053ecret", "metadata": {"namespace": "team-a"}}'},
        denied("no sensitive kinds"),
    ),
    (
        "resources_create_or_update",
        {"resource": "---\n".join([manifest()["resource"]] * 2)},
        ALLOWED,
    ),
    (
        "resources_create_or_update",
        {"resource": "---\n".join([manifest()["resource"], manifest("Secret")["resource"]])},
        denied("no sensitive kinds"),
    ),
    (
        "resources_create_or_update",
        {"resource": "kind: ConfigMap\nkind: Secret\n"},
        denied("(structured arguments)"),
    ),
    ("pods_exec", {"namespace": "team-a", "name": "p", "command": ["ls"]}, ALLOWED),
    (
        "pods_exec",
        {"namespace": "team-a", "name": "p", "command": ["/bin/sh", "-c", "id"]},
        denied("no shells or interpreters"),
    ),
    # the cluster is pinned: a named context must be a known one
    ("pods_list_in_namespace", {"namespace": "team-a", "context": "dev-cluster"}, ALLOWED),
    (
        "pods_list_in_namespace",
        {"namespace": "team-a", "context": "second"},
        denied("known contexts only"),
    ),
    ("pods_list_in_namespace", {"namespace": "team-a"}, ALLOWED),
    # Execute tools: pinned sources, no exposure
    ("pods_run", {"image": "registry.example.com/debug:1", "namespace": "team-a-dev"}, ALLOWED),
    (
        "pods_run",
        {"image": "docker.io/miner:latest", "namespace": "team-a-dev"},
        denied("dev namespace, pinned registry"),
    ),
    (
        "pods_run",
        {"image": "registry.example.com/debug:1", "namespace": "team-a-dev", "port": 8080},
        denied("no exposed ports"),
    ),
    (
        "helm_install",
        {"chart": "oci://registry.example.com/charts/web", "namespace": "team-a"},
        ALLOWED,
    ),
    (
        "helm_install",
        {"chart": "bitnami/redis", "namespace": "team-a"},
        denied("pinned charts in allowed namespaces"),
    ),
    # logs and node access bounded
    ("pods_log", {"name": "p", "namespace": "team-a"}, ALLOWED),
    ("pods_log", {"name": "p", "namespace": "team-a", "tail": 5000}, denied("bounded tail")),
    ("nodes_log", {"name": "n1", "query": "kubelet", "tailLines": 100}, ALLOWED),
    (
        "nodes_log",
        {"name": "n1", "query": "/var/log/pods/x.log", "tailLines": 100},
        denied("known node services, bounded"),
    ),
    ("nodes_log", {"name": "n1", "query": "kubelet"}, denied("known node services, bounded")),
    # mesh configuration: routing only, never delete
    (
        "kiali_manage_istio_config",
        {**VIRTUAL_SERVICE, "action": "create", "kind": "VirtualService", "namespace": "team-a"},
        ALLOWED,
    ),
    (
        "kiali_manage_istio_config",
        {
            **VIRTUAL_SERVICE,
            "action": "delete",
            "kind": "AuthorizationPolicy",
            "namespace": "team-a",
        },
        denied("routing kinds only, no deletes"),
    ),
    ("kiali_get_mesh_traffic_graph", {"namespaces": "team-a,team-a-dev"}, ALLOWED),
    (
        "kiali_get_mesh_traffic_graph",
        {"namespaces": "team-a,kube-system"},
        denied("allowed namespaces"),
    ),
    # a tool a later release adds is refused until it is listed
    ("pods_evict", {"name": "p", "namespace": "team-a"}, denied("(default deny)")),
]


@pytest.mark.parametrize(("tool", "args", "expected"), MAIN_DECISIONS)
def test_main_policy_decisions(tool: str, args: dict[str, Any], expected: Any) -> None:
    assert decide(MAIN, tool, args) == expected


READONLY_DECISIONS: list[tuple[str, dict[str, Any], tuple[bool, str | None]]] = [
    ("resources_get", {**POD, "namespace": "team-a"}, ALLOWED),
    ("resources_scale", DEPLOYMENT, ALLOWED),
    ("resources_scale", {**DEPLOYMENT, "scale": 3}, denied("read the scale only")),
    ("pods_list_in_namespace", {"namespace": "team-a"}, ALLOWED),
    ("vm_guest_info", {"namespace": "vm-sandbox", "name": "web"}, ALLOWED),
    ("configuration_view", {}, denied("(hidden)")),
    ("pods_top", {"namespace": "team-a", "all_namespaces": True}, denied("not cluster-wide")),
]

WRITES = sorted(name for name, tool in CATALOGUE.tools.items() if tool.category != Category.READ)


@pytest.mark.parametrize(("tool", "args", "expected"), READONLY_DECISIONS)
def test_readonly_policy_decisions(tool: str, args: dict[str, Any], expected: Any) -> None:
    assert decide(READONLY, tool, args) == expected


@pytest.mark.parametrize("tool", [t for t in WRITES if t != "resources_scale"])
def test_readonly_policy_refuses_every_tool_that_is_not_a_read(tool: str) -> None:
    assert decide(READONLY, tool, {"namespace": "team-a", "name": "x"}) == (
        False,
        "(default deny)",
    )


def test_the_main_policy_names_every_tool_of_the_server() -> None:
    policy = load_policy(MAIN)
    for name in CATALOGUE.tools:
        assert name in policy.entries or policy.is_hidden(name), name
    assert set(policy.entries) | set(policy.hidden) == set(CATALOGUE.tools)


def test_the_readonly_policy_lists_reads_only() -> None:
    policy = load_policy(READONLY)
    reads = {n for n, t in CATALOGUE.tools.items() if t.category == Category.READ}
    assert set(policy.entries) == (reads - {"configuration_view"}) | {"resources_scale"}
    assert policy.hidden == {"configuration_view"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "visible"), [(MAIN, 51), (READONLY, 35)], ids=["main", "readonly"]
)
async def test_in_front_of_the_real_server_denied_calls_never_reach_it(
    policy: Path, visible: int, tmp_path: Path, home: Path
) -> None:
    server_log = tmp_path / "server.log"
    command = kubernetes_command(
        tmp_path, "--toolsets", ALL_TOOLSETS, "--log-level", "5", "--log-file", str(server_log)
    )
    async with agent(through_mcpwall(policy, command, "--state-dsn", "memory:")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert len(names) == visible and "configuration_view" not in names
        secret = await client.call_tool(
            "resources_get",
            {"apiVersion": "v1", "kind": "secret", "name": "db", "namespace": "team-a"},
        )
        assert secret.is_error and text(secret).endswith("Reading Secrets is not permitted")
        view = await client.call_tool("configuration_view", {})
        assert view.is_error and "hidden by policy" in text(view)
        pod = await client.call_tool(
            "resources_get",
            {**POD, "namespace": "team-a"},
        )
        assert pod.is_error and "connection refused" in text(pod)
    executed = [line for line in server_log.read_text().splitlines() if '"mcp tool call"' in line]
    assert len(executed) == 1 and 'tool_name="resources_get"' in executed[0]


def test_the_main_policy_asks_a_human_before_helm_uninstall() -> None:
    result = mcpwall(
        "check", "-c", str(MAIN), "helm_uninstall", "--args",
        json.dumps({"name": "web", "namespace": "team-a"}), "--format", "json",
        "--state-dsn", "memory:",
    )  # fmt: skip
    body = json.loads(result.stdout)
    assert body["allowed"] is True and body["approval"] == "helm_uninstall[2] approve"


@pytest.mark.parametrize("path", [MAIN, READONLY])
def test_both_policies_pin_and_redact(path: Path) -> None:
    policy = load_policy(path)
    assert policy.pin_mode == "enforce"
    assert policy.redactor is not None
    assert {"kubernetes_secrets", "kubeconfig"} <= set(policy.redactor.detectors)
