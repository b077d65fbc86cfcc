"""Driving mcpwall with the official MCP Python SDK client, as an agent would."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from tests.conftest import MCPWALL


def through_mcpwall(policy: Path, command: list[str], *flags: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=MCPWALL,
        args=["-c", str(policy), *flags, "--", *command],
        env=dict(os.environ),
    )


@asynccontextmanager
async def agent(params: StdioServerParameters, mode: str = "auto") -> AsyncIterator[Client]:
    async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
        yield client


def text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def decision(result: Any) -> dict[str, Any]:
    meta = result.meta or {}
    return meta.get("mcpwall/decision", {})
