"""The benchmark's MCP server: answers as fast as Python can, so that what mcpwall adds
to a call is what the benchmark sees.

It speaks newline-delimited JSON-RPC on stdio: ``initialize`` and ``ping`` get minimal
results; ``tools/call`` gets a text result, or, when the call has an argument ``data``,
the same data back (the large-payload workloads).
"""

from __future__ import annotations

import os
import sys

import orjson

INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "bench", "version": "1"},
}
OK = {"content": [{"type": "text", "text": "ok"}]}


def main() -> None:
    read = sys.stdin.buffer.readline
    write = os.write
    loads = orjson.loads
    dumps = orjson.dumps
    while True:
        line = read()
        if not line:
            return
        message = loads(line)
        request_id = message.get("id")
        if request_id is None:
            continue
        method = message.get("method")
        if method == "tools/call":
            data = message["params"].get("arguments", {}).get("data")
            result = OK if data is None else {"content": [{"type": "text", "text": data}]}
        elif method == "initialize":
            result = INIT
        else:
            result = {}
        out = dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + b"\n"
        view = memoryview(out)
        while view:
            view = view[write(1, view) :]


if __name__ == "__main__":
    main()
