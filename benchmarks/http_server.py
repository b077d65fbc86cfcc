"""The benchmark's HTTP MCP server: Streamable HTTP with JSON answers, as fast as Python
serves them, so that what mcpwall adds is what the benchmark sees.

Usage: python http_server.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn

INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "bench-http", "version": "1"},
}
OK = {"content": [{"type": "text", "text": "ok"}]}
JSON = [(b"content-type", b"application/json"), (b"mcp-session-id", b"bench")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    message = orjson.loads(body) if body else {}
    if "id" not in message:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    result = INIT if message.get("method") == "initialize" else OK
    data = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        lifespan="off",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )
