"""A small MCP server written with the official SDK, shaped like the Kubernetes MCP
server, that keeps its own record: every tool call it executes is appended as one JSON
line to the file named by MCPWALL_TEST_RECORD. Tests read that record to prove what
reached the server and what did not."""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from recording import record

server = MCPServer("k8s-like")


@server.tool(annotations={"readOnlyHint": True})
def pods_list(namespace: str = "default") -> str:
    """List pods in a namespace."""
    record("pods_list", {"namespace": namespace})
    return f"pods in {namespace}: web-1, web-2"


@server.tool(annotations={"destructiveHint": True})
def pods_delete(name: str, namespace: str = "default") -> str:
    """Delete a pod."""
    record("pods_delete", {"name": name, "namespace": namespace})
    return f"deleted pod {namespace}/{name}"


@server.tool(annotations={"destructiveHint": True, "idempotentHint": True})
def vm_clone(source: str, target: str, namespace: str = "default") -> str:
    """Clone a KubeVirt VirtualMachine by creating a VirtualMachineClone resource."""
    record("vm_clone", {"source": source, "target": target, "namespace": namespace})
    return f"cloning {source} to {target}"


@server.tool()
def create_charge(amount: int, currency: str = "usd") -> str:
    """Charge a customer (amount in cents)."""
    record("create_charge", {"amount": amount, "currency": currency})
    if amount == 13:
        raise ToolError("card declined")
    return f"charged {amount} {currency}"


@server.tool(annotations={"readOnlyHint": True})
def configuration_view() -> str:
    """Show the kubeconfig."""
    record("configuration_view", {})
    return "apiVersion: v1\nkind: Config"


SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: Opaque
data:
  password: c3VwZXItc2VjcmV0LXBhc3N3b3Jk
  username: YWRtaW4=
"""


@server.tool(annotations={"readOnlyHint": True})
def resources_get(apiVersion: str, kind: str, name: str, namespace: str = "default") -> str:
    """Get a Kubernetes resource (as YAML)."""
    record("resources_get", {"apiVersion": apiVersion, "kind": kind, "name": name})
    if kind.lower() == "secret":
        return SECRET.format(name=name, namespace=namespace)
    return f"apiVersion: {apiVersion}\nkind: {kind}\nmetadata:\n  name: {name}\n"


@server.tool()
def echo(message: str) -> str:
    """Echo a message back."""
    record("echo", {"message": message})
    return message


if __name__ == "__main__":
    server.run()
