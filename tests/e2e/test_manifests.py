"""Manifests judged as the Kubernetes MCP server reads them: the real server binary
behind mcpwall, in front of a fake API server that records every request. Each spelling
of an object reaches the API server only when the policy allows the object it decodes
to; and for random manifests in random spellings, mcpwall's reading and the server's
(the request the API server received) agree on kind, namespace and name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpwall.engine.structured import read
from mcpwall.policy.model import Format, StructuredArgument
from tests.conftest import MCPWALL, SERVERS, kubernetes_server
from tests.helpers import RawProxy, call, initialize

POLICY = """
version: "1"
tools:
  resources_create_or_update:
    arguments:
      resource: {format: kubernetes-manifest, default_namespace: default}
    rules:
      - name: no secrets or bindings
        action: deny
        when:
          - path: "args.resource[*].kind"
            op: in
            value: [Secret, ClusterRoleBinding, RoleBinding]
      - name: team namespace
        conditions:
          - {path: "args.resource[*].metadata.namespace", op: in, value: [team-a]}
"""

# Reads every manifest, refuses what cannot be read one way, and lets the rest through:
# what the server then does shows how it read the manifest.
READ_ONLY = """
version: "1"
tools:
  resources_create_or_update:
    arguments:
      resource: {format: kubernetes-manifest, default_namespace: default}
    rules: []
"""

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- cluster: {{server: "http://127.0.0.1:{port}"}}
  name: fake
contexts:
- context: {{cluster: fake, user: fake, namespace: default}}
  name: fake
current-context: fake
users:
- name: fake
  user: {{token: "not-a-real-token"}}
"""

PLURALS = {
    "configmaps": "configmap",
    "secrets": "secret",
    "deployments": "deployment",
    "pods": "pod",
    "clusterrolebindings": "clusterrolebinding",
    "rolebindings": "rolebinding",
}


class Cluster:
    """mcpwall, in front of kubernetes-mcp-server, in front of the fake API server."""

    def __init__(self, directory: Path, policy: str) -> None:
        self.record = directory / "api-requests.jsonl"
        self.record.touch()
        self.api = subprocess.Popen(
            [sys.executable, str(SERVERS / "fake_kube_api.py"), str(self.record)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.api.stdout is not None
        port = int(self.api.stdout.readline())
        kubeconfig = directory / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG.format(port=port))
        policy_file = directory / "policy.yaml"
        policy_file.write_text(policy)
        self.proxy = RawProxy(
            [
                MCPWALL,
                "-c",
                str(policy_file),
                "--state-dsn",
                "memory:",
                "--",
                kubernetes_server(),
                "--kubeconfig",
                str(kubeconfig),
                "--disable-multi-cluster",
                "--toolsets",
                "core",
            ],
            env={"PATH": "/usr/bin:/bin", "HOME": str(directory)},
        )
        initialize(self.proxy, version="2025-06-18")
        self.proxy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.ids = iter(range(1, 1_000_000))

    def apply(self, manifest: str) -> tuple[Any, list[dict[str, Any]]]:
        """mcpwall's answer, and the writes the API server received for this call."""
        before = len(self.requests())
        answer = self.proxy.request(
            call(next(self.ids), "resources_create_or_update", {"resource": manifest})
        )
        return answer, [r for r in self.requests()[before:] if r["method"] != "GET"]

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def close(self) -> None:
        self.proxy.close()
        self.api.terminate()
        self.api.wait(timeout=10)
        assert self.api.stdout is not None
        self.api.stdout.close()


def denied(answer: Any) -> bool:
    result = answer.get("result", {})
    return "mcpwall/decision" in result.get("_meta", {})


def written(requests: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of each object the API server was asked to write."""
    out = []
    for request in requests:
        parts = request["path"].strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else ""
        out.append((PLURALS.get(parts[-2], parts[-2]), namespace, parts[-1]))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster"), POLICY)
    yield started
    started.close()


@pytest.fixture(scope="module")
def reading_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("reading"), READ_ONLY)
    yield started
    started.close()


# The spellings of the issue, each with {kind}, {ns} and {name} to fill in.
SPELLINGS = {
    "plain": "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n",
    "escapes": 'apiVersion: v1\nkind: "{kind_x}"\nmetadata: {{name: {name}, '
    'namespace: "{ns_u}"}}\n',
    "folded block": "apiVersion: v1\nkind: >-\n  {kind}\nmetadata:\n  name: {name}\n"
    "  namespace: >-\n    {ns}\n",
    "non-specific tag": "apiVersion: v1\nkind: ! {kind}\nmetadata: {{name: {name}, "
    "namespace: ! {ns}}}\n",
    "anchor and alias": "apiVersion: v1\nkind: &k {kind}\nmetadata:\n  name: {name}\n"
    "  namespace: &n {ns}\n  labels: {{kind-label: *k, namespace-label: *n}}\n",
    "line fold": 'apiVersion: v1\nkind: "{kind_a}\\\n  {kind_b}"\nmetadata: {{name: {name}, '
    'namespace: "{ns}"}}\n',
    "comment naming another namespace": "apiVersion: v1\nkind: {kind}  # namespace: team-a\n"
    "metadata:\n  name: {name}\n  # namespace: team-a\n  namespace: {ns}\n",
    "json": '{{"apiVersion": "v1", "kind": "{kind}", "metadata": {{"name": "{name}", '
    '"namespace": "{ns}"}}}}',
    "lower-case kind": "apiVersion: v1\nkind: {kind_lower}\nmetadata: {{name: {name}, "
    "namespace: {ns}}}\n",
    "second document": "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: first, "
    "namespace: team-a}}\n---\napiVersion: v1\nkind: {kind}\nmetadata: {{name: {name}, "
    "namespace: {ns}}}\n",
}


def spell(spelling: str, kind: str, ns: str | None, name: str) -> str:
    text = SPELLINGS[spelling]
    if ns is None:  # left out: the server uses the context's namespace
        for inline in (
            ", namespace: ! {ns}",
            ', namespace: "{ns_u}"',
            ', namespace: "{ns}"',
            ", namespace: {ns}",
            ', "namespace": "{ns}"',
            ", namespace-label: *n",
        ):
            text = text.replace(inline, "")
        text = "\n".join(
            line
            for line in text.split("\n")
            if not line.strip().startswith("namespace:") and line.strip() != "{ns}"
        )
    half = len(kind) // 2
    return text.format(
        kind=kind,
        kind_x="".join(f"\\x{ord(c):02x}" for c in kind),
        kind_a=kind[:half],
        kind_b=kind[half:],
        kind_lower=kind.lower(),
        ns=ns,
        ns_u="".join(f"\\U{ord(c):08x}" for c in ns or ""),
        name=name,
    )


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_each_spelling_reaches_the_api_only_when_its_object_is_allowed(
    cluster: Cluster, spelling: str
) -> None:
    for kind, ns, allowed in [
        ("Secret", "team-a", False),
        ("ConfigMap", "kube-system", False),
        ("ConfigMap", None, False),  # the server would use "default"
        ("ConfigMap", "team-a", True),
    ]:
        name = f"{spelling.replace(' ', '-')}-{kind.lower()}"
        answer, writes = cluster.apply(spell(spelling, kind, ns, name))
        if allowed:
            assert not denied(answer), (spelling, answer)
            assert written(writes)[-1] == ("configmap", "team-a", name), spelling
        else:
            assert denied(answer), (spelling, kind, ns)
            assert writes == [], (spelling, kind, ns)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    spelling=st.sampled_from([s for s in SPELLINGS if s != "second document"]),
    kind=st.sampled_from(["ConfigMap", "Secret", "Pod"]),
    ns=st.one_of(st.none(), st.sampled_from(["team-a", "default", "kube-system", "prod"])),
    name=st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True),
)
def test_mcpwall_and_the_server_read_random_manifests_alike(
    reading_cluster: Cluster, spelling: str, kind: str, ns: str | None, name: str
) -> None:
    # A name of its own: "n", "no" or "null" alone are not names to YAML (refused or
    # read as something else, as the reader tests show).
    manifest = spell(spelling, kind, ns, f"obj-{name}")
    ours = read(StructuredArgument("resource", Format.KUBERNETES_MANIFEST, 1, "default"), manifest)
    mine = [(d["kind"], d["metadata"].get("namespace") or "", d["metadata"]["name"]) for d in ours]
    answer, writes = reading_cluster.apply(manifest)
    assert not denied(answer), answer
    assert written(writes) == mine, (manifest, answer)
