"""An SDK server with the tools of Intercept's POLICY.md examples (GitHub, Stripe) that
records every call it executes to MCPWALL_TEST_RECORD. ``create_charge`` with amount 13
is declined (an isError result), as a card would be."""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from recording import record

server = MCPServer("intercept-examples")


@server.tool()
def create_issue(title: str) -> str:
    record("create_issue", {"title": title})
    return f"issue created: {title}"


@server.tool()
def create_pull_request(title: str) -> str:
    record("create_pull_request", {"title": title})
    return f"pull request opened: {title}"


@server.tool()
def delete_repository(name: str) -> str:
    record("delete_repository", {"name": name})
    return f"deleted {name}"


@server.tool()
def transfer_repository(name: str, owner: str) -> str:
    record("transfer_repository", {"name": name, "owner": owner})
    return f"transferred {name}"


@server.tool()
def list_webhooks() -> str:
    record("list_webhooks", {})
    return "[]"


@server.tool()
def search_code(query: str) -> str:
    record("search_code", {"query": query})
    return f"results for {query}"


@server.tool()
def create_charge(amount: int, currency: str) -> str:
    record("create_charge", {"amount": amount, "currency": currency})
    if amount == 13:
        raise ToolError("card declined")
    return f"charged {amount} {currency}"


@server.tool()
def create_refund(amount: int) -> str:
    record("create_refund", {"amount": amount})
    return f"refunded {amount}"


@server.tool()
def delete_customer(customer: str) -> str:
    record("delete_customer", {"customer": customer})
    return f"deleted {customer}"


if __name__ == "__main__":
    server.run()
