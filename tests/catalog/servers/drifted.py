"""A server that calls itself kubernetes-mcp-server but has drifted from the catalogue:
vm_clone claims to be read-only, and pods_evict is a tool the catalogue does not know."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(
        name="vm_clone",
        description="Clone a VirtualMachine.",
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}},
        annotations=types.ToolAnnotations(
            title="Virtual Machine: Clone",
            read_only_hint=True,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    ),
    types.Tool(
        name="pods_evict",
        description="Evicts a pod from its node.",
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    ),
]


async def list_tools(
    _ctx: Any, _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


server: Server[Any] = Server("kubernetes-mcp-server", version="v0.0.99", on_list_tools=list_tools)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
