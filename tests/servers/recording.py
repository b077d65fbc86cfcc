"""The record our SDK test servers keep: one JSON line per tool call they execute, in the
file named by MCPWALL_TEST_RECORD. Tests read it to prove what reached the server."""

from __future__ import annotations

import json
import os
from typing import Any


def record(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("MCPWALL_TEST_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")
