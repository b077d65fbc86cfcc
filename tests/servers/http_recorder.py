"""A bare Streamable HTTP MCP server (no SDK) that records every request it receives:
method, headers and body, one JSON line each, in the file named by MCPWALL_TEST_WIRE.

Tools: echo (returns its arguments), slow (never answers: the call stays open), die (the
process exits while the call is open), secret_get. It answers JSON, or an event stream
when the request's arguments ask for one (``{"stream": true}``); with ``{"drop": true}``
it cuts the stream after its first event and gives the answer to a GET that resumes it
(``Last-Event-ID``).

Usage: python http_recorder.py PORT
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import uvicorn

WIRE = os.environ.get("MCPWALL_TEST_WIRE")
SESSION = "recorder-session-1"
DROPPED: dict[str, bytes] = {}  # event id -> the message a cut stream did not deliver
TOOLS = [
    {"name": name, "inputSchema": {"type": "object"}}
    for name in ("echo", "slow", "die", "secret_get", "pods_delete")
]


def record(method: str, headers: dict[str, str], body: bytes) -> None:
    if WIRE:
        with open(WIRE, "a", encoding="utf-8") as out:
            out.write(
                json.dumps(
                    {"method": method, "headers": headers, "body": body.decode("utf-8", "replace")}
                )
                + "\n"
            )


async def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    if "id" not in message or "method" not in message:
        return None
    request_id = message["id"]
    method = message["method"]
    params = message.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "http-recorder", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        arguments = params.get("arguments") or {}
        if params.get("name") == "slow":
            await asyncio.Event().wait()
        if params.get("name") == "die":
            os._exit(3)
        result = {"content": [{"type": "text", "text": json.dumps(arguments)}]}
    elif method == "ping":
        result = {}
    else:
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": -32601, "message": f"Method not found: {method}"},
        }
    if (params.get("_meta") or {}).get("io.modelcontextprotocol/protocolVersion"):
        result["resultType"] = "complete"
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    record(scope["method"], headers, body)
    if scope["method"] == "GET" and headers.get("last-event-id") in DROPPED:
        # Resuming a stream this server cut: replay what it did not deliver.
        data = DROPPED.pop(headers["last-event-id"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": b"id: 3\nevent: message\ndata: " + data + b"\n\n",
            }
        )
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    message = json.loads(body)
    reply = await answer(message)
    out_headers = [(b"mcp-session-id", SESSION.encode())]
    if reply is None:
        await send({"type": "http.response.start", "status": 202, "headers": out_headers})
        await send({"type": "http.response.body", "body": b""})
        return
    arguments = (message.get("params") or {}).get("arguments") or {}
    data = json.dumps(reply).encode()
    if arguments.get("drop"):
        # Prime the stream, then cut it before the answer: the client must resume.
        DROPPED["primed-1"] = data
        out_headers.append((b"content-type", b"text/event-stream"))
        await send({"type": "http.response.start", "status": 200, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"id: primed-1\nretry: 100\ndata: \n\n"})
        return
    if arguments.get("stream"):
        out_headers.append((b"content-type", b"text/event-stream"))
        data = b"id: 1\ndata: \n\nid: 2\nevent: message\ndata: " + data + b"\n\n"
    else:
        out_headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": 200, "headers": out_headers})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
