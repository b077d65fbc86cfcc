"""What the catalogue tests share: mcpwall as a process, and the real Kubernetes MCP
server with every toolset and a throwaway kubeconfig of two contexts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import MCPWALL, kubernetes_server
from tests.helpers import wait_for_port as wait_for_port  # the catalog tests import it here

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POLICIES = ROOT / "policies"
PAGED_SERVER = [sys.executable, str(HERE / "servers" / "paged.py")]
DRIFTED_SERVER = [sys.executable, str(HERE / "servers" / "drifted.py")]

ALL_TOOLSETS = "config,core,helm,kcp,kiali,kubevirt,netobserv,tekton"

# Two contexts: the server then lists configuration_contexts_list and adds the context
# parameter. Nothing listens on port 1, so no call can reach a cluster.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:1"}
  name: first
- cluster: {server: "https://127.0.0.1:1"}
  name: second
contexts:
- context: {cluster: first, user: throwaway, namespace: team-a}
  name: first
- context: {cluster: second, user: throwaway}
  name: second
current-context: first
users:
- name: throwaway
  user: {token: "not-a-real-token"}
"""


def kubernetes_command(tmp_path: Path, *flags: str) -> list[str]:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(KUBECONFIG)
    return [kubernetes_server(), "--kubeconfig", str(kubeconfig), *flags]


def mcpwall(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPWALL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def mcpwall_json(*args: str) -> Any:
    result = mcpwall(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
