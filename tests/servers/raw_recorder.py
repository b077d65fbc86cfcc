"""A bare JSON-RPC MCP server (no SDK) that records every line it receives.

It exists for what the SDK servers cannot do: JSON-RPC batches, garbage on stdout, dying
mid-call, server-to-client requests on demand. Every line read from stdin is appended to
the file named by MCPWALL_TEST_WIRE, exactly as received.

Tools: echo (returns its arguments), fail (JSON-RPC error), iserror (an isError result),
crash (exits with status 3 without answering), slow (answers from another thread; with
``{"hold": true}`` only once the test releases it), ask (sends a sampling request to the
client and answers with the client's reply), flood (arguments.count notifications of
arguments.size bytes each, then the answer), block (stops reading stdin until the test
releases it, then answers). A test releases held calls with tests.helpers.release: one
byte written to this process's FIFO, ``<MCPWALL_TEST_WIRE>.release-<pid>``, answers one.
Any other name is answered like echo, unless MCPWALL_TEST_EXACT_TOOLS is set: then, as a
server that looks its tools up by exact name, with a JSON-RPC error for an unknown tool.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

WIRE = os.environ.get("MCPWALL_TEST_WIRE")
VERSION = os.environ.get("MCPWALL_TEST_VERSION")  # force the negotiated version
EXACT_TOOLS = bool(os.environ.get("MCPWALL_TEST_EXACT_TOOLS"))
out_lock = threading.Lock()
waiting: dict[Any, Any] = {}  # server request id -> original client request id
released = threading.Semaphore(0)  # one per byte the test wrote to the release FIFO

TOOLS = [
    {
        "name": "echo",
        "description": "Echo the arguments",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
        "_meta": {"x.example/owner": "team-a"},
        "outputSchema": {"type": "object"},
        "x-unknown": [1, 2],
    },
    {
        "name": "pods_delete",
        "description": "Delete a pod",
        "inputSchema": {"type": "object"},
        "annotations": {"destructiveHint": True},
    },
    {"name": "secret_get", "description": "Read a secret", "inputSchema": {"type": "object"}},
    {"name": "fail", "inputSchema": {"type": "object"}},
    {"name": "iserror", "inputSchema": {"type": "object"}},
    {"name": "crash", "inputSchema": {"type": "object"}},
    {"name": "slow", "inputSchema": {"type": "object"}},
    {"name": "ask", "inputSchema": {"type": "object"}},
]
# flood and block are for the fault tests; unlisted, so the listing tests keep their pages.
KNOWN = frozenset(str(tool["name"]) for tool in TOOLS) | {"flood", "block"}


def send(message: Any) -> None:
    with out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def respond(message: dict[str, Any]) -> dict[str, Any] | None:
    method = message.get("method")
    request_id = message.get("id")
    params = message.get("params") or {}
    if method is None:  # the client's answer to our request
        original = waiting.pop(request_id, None)
        if original is not None:
            return {
                "jsonrpc": "2.0",
                "id": original,
                "result": {"content": [{"type": "text", "text": json.dumps(message)}]},
            }
        return None
    if "id" not in message:
        return None
    if method == "initialize":
        version = VERSION or params.get("protocolVersion", "2025-11-25")
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "raw-recorder", "version": "1"},
            },
        }
    if method == "tools/list":
        cursor = params.get("cursor")
        page, next_cursor = (TOOLS[4:], None) if cursor == "page2" else (TOOLS[:4], "page2")
        result: dict[str, Any] = {
            "tools": page,
            "_meta": {"x.example/page": cursor or 1},
            "ttlMs": 5000,
        }
        if next_cursor:
            result["nextCursor"] = next_cursor
        return {"jsonrpc": "2.0", "id": request_id, "result": result}
    if method == "tools/call":
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if EXACT_TOOLS and name not in KNOWN:
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32602, "message": f"Unknown tool: {name}"},
            }
        if name == "fail":
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32603, "message": "the tool failed"},
            }
        if name == "iserror":
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"content": [{"type": "text", "text": "no"}], "isError": True},
            }
        if name == "crash":
            sys.stderr.write("raw-recorder: crashing on purpose\n")
            sys.stderr.flush()
            os._exit(3)
        if name == "slow":

            def later() -> None:
                if arguments.get("hold"):
                    released.acquire()
                send(
                    {
                        "jsonrpc": "2.0",
                        "id": request_id,
                        "result": {"content": [{"type": "text", "text": "slow done"}]},
                    }
                )

            threading.Thread(target=later, daemon=True).start()
            return None
        if name == "flood":
            pad = "x" * int(arguments.get("size", 100))
            for seq in range(int(arguments.get("count", 1000))):
                send(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/message",
                        "params": {"level": "info", "data": {"seq": seq, "pad": pad}},
                    }
                )
            return {"jsonrpc": "2.0", "id": request_id, "result": {"content": []}}
        if name == "block":
            released.acquire()
            return {"jsonrpc": "2.0", "id": request_id, "result": {"content": []}}
        if name == "ask":
            server_id = f"srv-{request_id}"
            waiting[server_id] = request_id
            send(
                {
                    "jsonrpc": "2.0",
                    "id": server_id,
                    "method": "sampling/createMessage",
                    "params": {"messages": [], "maxTokens": 10},
                }
            )
            return None
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": {
                "content": [{"type": "text", "text": json.dumps({"name": name})}],
                "structuredContent": {"name": name, "arguments": arguments},
            },
        }
    if method == "ping":
        return {"jsonrpc": "2.0", "id": request_id, "result": {}}
    if method == "test/garbage":
        with out_lock:
            sys.stdout.write('this is not json\n{"truncated": \n')
            sys.stdout.flush()
        return {"jsonrpc": "2.0", "id": request_id, "result": {"after": "garbage"}}
    if method == "test/notify":
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {"level": "info", "data": "héllo ✓"},
            }
        )
        return {"jsonrpc": "2.0", "id": request_id, "result": {}}
    if method == "test/exit":
        sys.exit(int(params.get("status", 0)))
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": -32601, "message": f"Method not found: {method}"},
    }


def answer(message: Any) -> dict[str, Any] | None:
    try:
        return respond(message)
    except (AttributeError, TypeError, ValueError) as exc:  # a shape it cannot read
        return {
            "jsonrpc": "2.0",
            "id": message.get("id") if isinstance(message, dict) else None,
            "error": {"code": -32603, "message": f"raw-recorder cannot read this: {exc}"},
        }


def watch_releases() -> None:
    """Made before the first line is read, so that a release never finds no FIFO."""
    path = f"{WIRE}.release-{os.getpid()}"
    os.mkfifo(path)
    fifo = os.open(path, os.O_RDWR)  # a writer of its own: reading never meets the end

    def count() -> None:
        while True:
            released.release(len(os.read(fifo, 4096)))

    threading.Thread(target=count, daemon=True).start()


def main() -> None:
    if WIRE:
        watch_releases()
    for raw in sys.stdin.buffer:
        if WIRE:
            with open(WIRE, "ab") as wire:
                wire.write(raw if raw.endswith(b"\n") else raw + b"\n")
        try:
            message = json.loads(raw)
        except ValueError:
            send(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            )
            continue
        if isinstance(message, list):
            answers = [a for a in (answer(m) for m in message if isinstance(m, dict)) if a]
            if answers:
                send(answers)
            continue
        reply = answer(message)
        if reply is not None:
            send(reply)
    if os.environ.get("MCPWALL_TEST_IGNORE_EOF"):
        if os.environ["MCPWALL_TEST_IGNORE_EOF"] == "and-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        threading.Event().wait()  # for ever: only a signal ends this process


if __name__ == "__main__":
    main()
