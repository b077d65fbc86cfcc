"""Scanning a live MCP server: connect with the official SDK client, list every tool
(page by page), and classify each one, with the catalogue's verdict where the server is
one the catalogue knows."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from mcpwall.catalog.classify import Category, Classification, Risk, ToolFacts, classify
from mcpwall.catalog.entries import CatalogServer, CatalogTool, server_for

# A server whose cursor never runs out is broken; stop rather than loop for ever.
_MAX_PAGES = 1000


class ScanError(Exception):
    """Scanning failed for a reason the user can act on; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is: a command to start (stdio) or a URL (Streamable HTTP)."""

    command: tuple[str, ...] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return self.url if self.url is not None else " ".join(self.command)


@dataclass(frozen=True, slots=True)
class ScannedTool:
    declared: Mapping[str, Any]  # the tool as tools/list gave it
    automatic: Classification
    catalogued: CatalogTool | None
    drift: tuple[str, ...]  # where the server differs from its catalogue entry

    @property
    def name(self) -> str:
        return str(self.declared["name"])

    @property
    def category(self) -> Category:
        return self.catalogued.category if self.catalogued else self.automatic.category

    @property
    def risk(self) -> Risk:
        return self.catalogued.risk if self.catalogued else self.automatic.risk

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.catalogued.why if self.catalogued else self.automatic.reasons

    @property
    def summary(self) -> str:
        """Why the tool has its risk, in one line: the catalogue's last reason (the one
        that settles the risk), or the classifier's reasons joined."""
        if self.catalogued is not None:
            return self.catalogued.why[-1] if self.catalogued.why else ""
        return "; ".join(self.automatic.reasons)

    @property
    def flags(self) -> tuple[str, ...]:
        """What a human should look at. For a catalogued tool the catalogue has weighed
        the classifier's disagreements already; what remains is where the server
        differs from the catalogue, and the catalogue's own warning."""
        if self.catalogued is None:
            return (*self.drift, *self.automatic.flags)
        note = (self.catalogued.note,) if self.catalogued.note else ()
        return (*self.drift, *note)


@dataclass(frozen=True, slots=True)
class ScanResult:
    target: Target
    server_name: str
    server_version: str
    protocol_version: str
    tools: tuple[ScannedTool, ...]
    catalogue: CatalogServer | None
    not_offered: tuple[str, ...]  # catalogued tools this server did not list


def scan(target: Target, timeout: float, progress: Callable[[str], None]) -> ScanResult:
    import anyio

    server_name, server_version, protocol, tools = anyio.run(_list_tools, target, timeout, progress)
    progress(f"classifying {len(tools)} tools")
    catalogue = server_for(server_name)
    scanned = tuple(_scanned(tool, catalogue) for tool in tools)
    listed = {tool.name for tool in scanned}
    not_offered = tuple(sorted(set(catalogue.tools) - listed)) if catalogue else ()
    return ScanResult(
        target, server_name, server_version, protocol, scanned, catalogue, not_offered
    )


def _scanned(tool: Mapping[str, Any], catalogue: CatalogServer | None) -> ScannedTool:
    automatic = classify(ToolFacts.from_wire(tool))
    if catalogue is None:
        return ScannedTool(tool, automatic, None, ())
    entry = catalogue.tools.get(str(tool["name"]))
    if entry is None:
        drift = (
            f"not in the {catalogue.name} {catalogue.version} catalogue: a newer tool, "
            "classified from what it declares",
        )
        return ScannedTool(tool, automatic, None, drift)
    declared = tool.get("annotations") or {}
    drift = tuple(
        f"the server declares {key} {json.dumps(declared.get(key))}, the "
        f"{catalogue.version} catalogue {json.dumps(entry.annotations.get(key))}"
        for key in sorted(set(entry.annotations) | set(declared))
        if entry.annotations.get(key) != declared.get(key)
    )
    return ScannedTool(tool, automatic, entry, drift)


# -- the connection ---------------------------------------------------------------------


@dataclass
class _Witness:
    """What the transport saw that the SDK does not pass on: the server's stderr, and
    the last HTTP error status (the SDK turns a 401 into a generic error)."""

    server_stderr: TextIO
    http_error: str | None = None


async def _list_tools(
    target: Target, timeout: float, progress: Callable[[str], None]
) -> tuple[str, str, str, list[dict[str, Any]]]:
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as server_stderr:
        witness = _Witness(server_stderr)
        try:
            return await _session(target, timeout, progress, witness)
        except ScanError:
            raise
        except BaseException as exc:
            raise _explained(exc, target, timeout, witness) from None


async def _session(
    target: Target, timeout: float, progress: Callable[[str], None], witness: _Witness
) -> tuple[str, str, str, list[dict[str, Any]]]:
    import anyio
    from mcp import Client

    where = target.describe()
    progress(f"connecting to {where if len(where) <= 50 else where[:47] + '...'}")
    with anyio.fail_after(timeout):
        async with Client(_transport(target, witness)) as client:
            info = client.server_info
            name = info.name if info else ""
            version = info.version if info else ""
            tools: list[dict[str, Any]] = []
            if client.server_capabilities.tools is None:
                return name, version, client.protocol_version, tools
            cursor: str | None = None
            seen: set[str] = set()
            for page in range(1, _MAX_PAGES + 1):
                progress(
                    f"listing tools of {name or 'the server'}: page {page}, {len(tools)} so far"
                )
                result = await client.list_tools(cursor=cursor)
                tools += [
                    tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for tool in result.tools
                ]
                cursor = result.next_cursor
                if cursor is None:
                    return name, version, client.protocol_version, tools
                if cursor in seen:
                    raise ScanError(
                        "the server's tools/list pagination does not end: it sent the "
                        f'cursor "{cursor}" twice'
                    )
                seen.add(cursor)
    raise ScanError(f"the server's tools/list pagination did not end within {_MAX_PAGES} pages")


def _transport(target: Target, witness: _Witness) -> Any:
    import os

    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    if target.url is None:
        params = StdioServerParameters(
            command=target.command[0], args=list(target.command[1:]), env=dict(os.environ)
        )
        return stdio_client(params, errlog=witness.server_stderr)
    import httpx2

    async def note_errors(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            witness.http_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()

    client = httpx2.AsyncClient(
        headers=dict(target.headers),
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [note_errors]},
    )
    return streamable_http_client(target.url, http_client=client)


def _explained(
    exc: BaseException, target: Target, timeout: float, witness: _Witness
) -> BaseException:
    """The failure as one sentence, or the exception itself if it is not the user's."""
    import httpx2
    from mcp import MCPError

    cause = _leaf(exc)
    where = target.describe()
    if isinstance(cause, TimeoutError):
        return ScanError(f"{where} did not list its tools within {timeout:g} s")
    if isinstance(cause, OSError) and target.url is None:
        reason = cause.strerror or str(cause)
        return ScanError(f"cannot start the MCP server {target.command[0]}: {reason}")
    if isinstance(cause, httpx2.HTTPStatusError):
        status = cause.response.status_code
        return ScanError(f"{where} answered HTTP {status} {cause.response.reason_phrase}")
    if isinstance(cause, httpx2.HTTPError):
        return ScanError(f"cannot connect to {where}: {cause}")
    if isinstance(cause, MCPError):
        if witness.http_error is not None:
            return ScanError(f"{where} answered {witness.http_error}")
        said = _last_line(witness.server_stderr)
        if target.url is None and "closed" in str(cause.error.message).lower():
            return ScanError(
                "the MCP server closed the connection before listing its tools"
                + (f" (it said: {said})" if said else "")
            )
        return ScanError(f"{where} answered with an error: {cause.error.message}")
    return exc


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _last_line(stream: TextIO) -> str:
    stream.flush()
    stream.seek(0)
    lines = [line.strip() for line in stream.read().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= 200 else last[:197] + "..."
