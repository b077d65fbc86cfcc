"""An SDK server (the low-level API, so that it can page tools/list) whose tools cover
what the classifier must tell apart, three tools per page.

    paged.py                      serve on stdio
    paged.py --http PORT TOKEN    serve Streamable HTTP on 127.0.0.1:PORT; requests
                                  without the header X-Scan-Token: TOKEN get HTTP 401
"""

from __future__ import annotations

import sys
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

PAGE = 3

TOOLS = [
    types.Tool(
        name="read_notes",
        description="Reads the notes of a project.",
        input_schema={"type": "object", "properties": {"project": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name="delete_everything",
        description="Deletes every record in the database.",
        input_schema={"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="run_script",
        description="Runs a script on the host.",
        input_schema={"type": "object", "properties": {"script": {"type": "string"}}},
    ),
    types.Tool(
        name="create_payment",
        description="Creates a payment to a supplier.",
        input_schema={
            "type": "object",
            "properties": {"amount": {"type": "integer"}, "currency": {"type": "string"}},
        },
    ),
    types.Tool(
        name="fetch_url",
        description="Fetches a web page.",
        input_schema={"type": "object", "properties": {"url": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="export_users",
        description="Returns every user with their API tokens.",
        input_schema={"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="yes",
        description="Adds a vote.",
        input_schema={"type": "object", "properties": {}},
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False),
    ),
]


async def list_tools(
    _ctx: Any, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    start = int(params.cursor) if params and params.cursor else 0
    end = start + PAGE
    return types.ListToolsResult(
        tools=TOOLS[start:end], next_cursor=str(end) if end < len(TOOLS) else None
    )


server: Server[Any] = Server("paged", on_list_tools=list_tools)


def serve_http(port: int, token: str) -> None:
    import uvicorn

    app = server.streamable_http_app()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and headers.get(b"x-scan-token") != token.encode():
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"a token is required"})
            return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="error")


async def serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        serve_http(int(sys.argv[2]), sys.argv[3])
    else:
        import anyio

        anyio.run(serve_stdio)
