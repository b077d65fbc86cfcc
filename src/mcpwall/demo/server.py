"""The demo's MCP server: Kubernetes-style tools over a pretend cluster, written with the
official MCP SDK. It writes every call it executes to the file named by
MCPWALL_DEMO_RECORD, so that the demo can show which calls reached it."""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("demo-cluster")
PODS = {
    "default": ["web-1", "web-2"],
    "kube-system": ["coredns-7d8f", "etcd-0"],
    "prod": ["api-1", "api-2", "api-3"],
}


def _record(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("MCPWALL_DEMO_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def pods_list(namespace: str = "default") -> str:
    """List the pods of a namespace."""
    _record("pods_list", {"namespace": namespace})
    return ", ".join(PODS.get(namespace, [])) or "no pods"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def pods_delete(name: str, namespace: str = "default") -> str:
    """Delete a pod."""
    _record("pods_delete", {"name": name, "namespace": namespace})
    return f"pod {namespace}/{name} deleted"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def pods_exec(name: str, command: list[str], namespace: str = "default") -> str:
    """Run a command in a pod."""
    _record("pods_exec", {"name": name, "command": command, "namespace": namespace})
    return "executed"


@server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
def vm_clone(source: str, target: str, namespace: str = "default") -> str:
    """Clone a KubeVirt VirtualMachine by creating a VirtualMachineClone resource."""
    _record("vm_clone", {"source": source, "target": target, "namespace": namespace})
    return f"VirtualMachineClone {target} created from {source}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def configuration_view() -> str:
    """Show the current kubeconfig."""
    _record("configuration_view", {})
    return "users: [{name: admin, user: {token: REDACTED-IN-DEMO}}]"


@server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
def resources_scale(name: str, replicas: int, namespace: str = "default") -> str:
    """Scale a Deployment."""
    _record("resources_scale", {"name": name, "replicas": replicas, "namespace": namespace})
    return f"deployment {namespace}/{name} scaled to {replicas}"


if __name__ == "__main__":
    server.run()
