"""The real MCP servers the catalogue describes, as the refresh command and the drift
test start them: the pinned package, the command, and what each needs in its
environment to list its tools with no network and no real credentials (dummy tokens
where a server insists on one; none of them calls out before a tool is called).

``declared`` is what the catalogue keeps of a tool as tools/list sent it: the
description and annotations exactly, each input parameter summarised, and a digest of
the input schema so that a change anywhere in it shows."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NPM = ROOT / "tests" / "npm"
SERVERS_VENV = ROOT / ".venv-servers"
PYPI_PINS = ROOT / "tests" / "pypi" / "servers.txt"
DATA = ROOT / "src" / "mcpwall" / "catalog" / "data"
REFRESH = "python -m tests.catalog.refresh"

# A server's arguments, given the scratch directory it runs in.
Arguments = Callable[[Path], list[str]]


@dataclass(frozen=True, slots=True)
class RealServer:
    key: str  # its catalogue file's stem
    registry: str  # npm or pypi
    package: str
    binary: str
    arguments: Arguments = lambda _scratch: []
    shown_arguments: tuple[str, ...] = ()  # the arguments as the listing line shows them
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def data_file(self) -> Path:
        return DATA / f"{self.key}.yaml"

    def pinned(self) -> str:
        """The package and the version it is pinned to, e.g. "npm @playwright/mcp 0.0.86"."""
        return f"{self.registry} {self.package} {_pins(self.registry)[self.package]}"

    def shown_command(self) -> str:
        return " ".join((self.binary, *self.shown_arguments))

    def command(self, scratch: Path) -> list[str]:
        folder = NPM / "node_modules" / ".bin" if self.registry == "npm" else SERVERS_VENV / "bin"
        return [str(folder / self.binary), *self.arguments(scratch)]


def _pins(registry: str) -> dict[str, str]:
    if registry == "npm":
        return dict(json.loads((NPM / "package.json").read_text("utf-8"))["dependencies"])
    pins = {}
    for line in PYPI_PINS.read_text("utf-8").splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if version:
            pins[name] = version
    return pins


POSTGRES_URL = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1

REAL_SERVERS: tuple[RealServer, ...] = (
    RealServer(
        "server-filesystem",
        "npm",
        "@modelcontextprotocol/server-filesystem",
        "mcp-server-filesystem",
        lambda scratch: [str(scratch)],
        ("DIR",),
    ),
    RealServer(
        "server-memory",
        "npm",
        "@modelcontextprotocol/server-memory",
        "mcp-server-memory",
        # Its default file lies inside the package; this keeps the package untouched.
        env={"MEMORY_FILE_PATH": "{scratch}/memory.jsonl"},
    ),
    RealServer(
        "server-everything", "npm", "@modelcontextprotocol/server-everything",
        "mcp-server-everything",
    ),
    RealServer(
        "server-sequential-thinking", "npm", "@modelcontextprotocol/server-sequential-thinking",
        "mcp-server-sequential-thinking",
    ),
    RealServer(
        "server-github", "npm", "@modelcontextprotocol/server-github", "mcp-server-github",
        env={"GITHUB_PERSONAL_ACCESS_TOKEN": "not-a-real-token"},
    ),
    RealServer(
        "server-slack", "npm", "@modelcontextprotocol/server-slack", "mcp-server-slack",
        env={"SLACK_BOT_TOKEN": "xoxb-not-a-real-token", "SLACK_TEAM_ID": "T00000000"},
    ),
    RealServer(
        "server-postgres", "npm", "@modelcontextprotocol/server-postgres", "mcp-server-postgres",
        lambda _scratch: [POSTGRES_URL], (POSTGRES_URL,),
    ),
    RealServer(
        "server-brave-search", "npm", "@modelcontextprotocol/server-brave-search",
        "mcp-server-brave-search", env={"BRAVE_API_KEY": "not-a-real-key"},
    ),
    RealServer("playwright-mcp", "npm", "@playwright/mcp", "playwright-mcp"),
    RealServer("mcp-server-git", "pypi", "mcp-server-git", "mcp-server-git"),
    RealServer("mcp-server-fetch", "pypi", "mcp-server-fetch", "mcp-server-fetch"),
    RealServer("mcp-server-time", "pypi", "mcp-server-time", "mcp-server-time"),
)  # fmt: skip


def real_server(key: str) -> RealServer:
    for server in REAL_SERVERS:
        if key in (server.key, server.package):
            return server
    known = ", ".join(s.key for s in REAL_SERVERS)
    raise LookupError(f'no real server "{key}" (known: {known})')


# -- listing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    name: str  # as the server introduced itself in initialize
    version: str
    tools: tuple[Mapping[str, Any], ...]  # as tools/list sent them, every page


async def list_all(servers: tuple[RealServer, ...], timeout: float) -> dict[str, Listing]:
    """Every server started side by side and listed, by key; the first that cannot list
    its tools within ``timeout`` seconds fails the lot, with what it said on stderr."""
    import anyio

    listings: dict[str, Listing] = {}
    with tempfile.TemporaryDirectory(prefix="mcpwall-real-servers-") as scratch:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as group:
                for server in servers:
                    place = Path(scratch) / server.key
                    place.mkdir()
                    group.start_soon(_list_into, server, place, listings)
    return listings


async def _list_into(server: RealServer, scratch: Path, listings: dict[str, Listing]) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    command = server.command(scratch)
    env = {key: value.format(scratch=scratch) for key, value in server.env.items()}
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={**os.environ, **env}, cwd=scratch
    )
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        try:
            async with Client(stdio_client(params, errlog=stderr)) as client:
                info = client.server_info
                tools: list[Mapping[str, Any]] = []
                cursor: str | None = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools += [
                        t.model_dump(mode="json", by_alias=True, exclude_none=True)
                        for t in page.tools
                    ]
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except Exception as exc:
            stderr.seek(0)
            said = " | ".join(stderr.read().strip().splitlines()[-3:])
            raise RuntimeError(f"{server.shown_command()} did not list its tools: {exc!r}; "
                               f"it said: {said}") from None  # fmt: skip
    listings[server.key] = Listing(
        info.name if info else "", info.version if info else "", tuple(tools)
    )


# -- what the catalogue keeps of a tool -------------------------------------------------


def declared(tool: Mapping[str, Any]) -> dict[str, Any]:
    schema: Mapping[str, Any] = tool.get("inputSchema") or {}
    required = set(schema.get("required") or ())
    kept: dict[str, Any] = {
        "description": str(tool.get("description") or "").strip(),
        "annotations": dict(tool.get("annotations") or {}),
        "input": {
            name: {
                "type": _type(spec),
                "required": name in required,
                "about": str(spec.get("description") or ""),
            }
            for name, spec in (schema.get("properties") or {}).items()
        },
        "schema_digest": _digest(schema),
    }
    if tool.get("title"):
        kept["title"] = tool["title"]
    return kept


def _type(spec: Mapping[str, Any]) -> str:
    """A parameter's type in words: string, array of string, one of "a", "b" or null."""
    if "enum" in spec:
        return "one of " + ", ".join(json.dumps(value) for value in spec["enum"])
    choices = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(choices, list):
        return " or ".join(_type(choice) for choice in choices)
    kind = spec.get("type")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array" and isinstance(spec.get("items"), Mapping):
        return "array of " + _type(spec["items"])
    return str(kind) if kind else "any"


def _digest(schema: Mapping[str, Any]) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
