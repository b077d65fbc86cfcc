"""The built-in catalogue: one YAML file per MCP server under ``data/``, read into
frozen entries. The files are ours; a malformed one is a bug, reported as CatalogError.

A tool's entry holds our judgement (category, risk, reasons, dangers, rules), written by
hand, and what the server declares about it. In the older files (Kubernetes) the
declaration is cited by hand, as ``parameters`` and ``annotations``; in the others it is
a ``declared`` block that ``python -m tests.catalog.refresh`` copies from the real
server's tools/list (description, annotations, a summary of the input schema)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from mcpwall.catalog.classify import Category, Risk, ToolFacts


class CatalogError(Exception):
    """A catalogue file that does not have the shape this module reads."""


class UnknownName(LookupError):
    """No server or tool of that name; ``suggestion`` is the closest known one, if any."""

    def __init__(self, message: str, suggestion: str | None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    required: bool
    about: str


@dataclass(frozen=True, slots=True)
class CatalogTool:
    name: str
    server: str
    toolset: str
    does: str
    parameters: tuple[Parameter, ...]
    annotations: Mapping[str, Any]
    category: Category
    risk: Risk
    why: tuple[str, ...]
    dangers: tuple[str, ...]
    note: str | None
    rules: str  # YAML: the list of rules we suggest under tools.<name>.rules
    hide: bool  # whether we suggest hiding the tool outright
    # The server's own description, where the entry keeps a copy (None: not kept).
    description: str | None = None
    # The arguments that decide how dangerous a call is, each with why.
    arguments: Mapping[str, str] = field(default_factory=dict)
    # How the rules need an argument read before they judge it (a manifest as the
    # server parses it, a command as argv): the policy's tools.<name>.arguments.
    read_as: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def facts(self) -> ToolFacts:
        """What the server declares about the tool, for the classifier."""
        return ToolFacts(
            name=self.name,
            description=self.description,
            annotations=self.annotations,
            parameters={p.name: {"type": p.type} for p in self.parameters},
        )


@dataclass(frozen=True, slots=True)
class CatalogServer:
    name: str
    title: str
    aliases: tuple[str, ...]
    version: str
    project: str
    about: str
    listing: str
    notes: tuple[str, ...]
    toolsets: Mapping[str, str]
    tools: Mapping[str, CatalogTool]
    # The package the tools were read from, e.g. "npm @modelcontextprotocol/server-memory
    # 2026.8.31"; empty for an entry cited by hand.
    package: str = ""

    def tool(self, name: str) -> CatalogTool:
        tool = self.tools.get(name)
        if tool is None:
            close = difflib.get_close_matches(name, list(self.tools), n=1)
            raise UnknownName(
                f'the {self.name} catalogue has no tool "{name}"', close[0] if close else None
            )
        return tool


@cache
def servers() -> tuple[CatalogServer, ...]:
    folder = resources.files("mcpwall.catalog").joinpath("data")
    found = []
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        # attacks.yaml beside them is the attack database (catalog/attacks.py), no server.
        if item.name.endswith(".yaml") and item.name != "attacks.yaml":
            found.append(_read_server(item.name, yaml.safe_load(item.read_text("utf-8"))))
    return tuple(found)


def find_server(name: str) -> CatalogServer:
    """The server called ``name`` or known by it as an alias, case-insensitively."""
    wanted = name.lower()
    for server in servers():
        if wanted == server.name.lower() or wanted in (a.lower() for a in server.aliases):
            return server
    names = [s.name for s in servers()] + [a for s in servers() for a in s.aliases]
    close = difflib.get_close_matches(name, names, n=1)
    raise UnknownName(f'the catalogue has no server "{name}"', close[0] if close else None)


def server_for(implementation_name: str | None) -> CatalogServer | None:
    """The catalogue entry of a server that introduced itself by exactly this name. Not
    by alias: another Kubernetes server may well call itself "kubernetes"."""
    return next((s for s in servers() if s.name == implementation_name), None)


# -- reading the files ------------------------------------------------------------------


def _read_server(file: str, data: Any) -> CatalogServer:
    where = f"catalogue file {file}"
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: not a mapping")
    name = _text(data, "server", where)
    shared = {
        key: Parameter(key, _text(p, "type", key), bool(p.get("required")), _text(p, "about", key))
        for key, p in (data.get("shared_parameters") or {}).items()
    }
    tools = {
        tool_name: _read_tool(name, tool_name, raw, shared, f"{where}: tools.{tool_name}")
        for tool_name, raw in _mapping(data, "tools", where).items()
    }
    return CatalogServer(
        name=name,
        title=_text(data, "title", where),
        aliases=tuple(data.get("aliases") or ()),
        version=_text(data, "version", where),
        project=_text(data, "project", where),
        about=_text(data, "about", where),
        listing=_text(data, "listing", where),
        notes=tuple(data.get("notes") or ()),
        toolsets=dict(_mapping(data, "toolsets", where)),
        tools=tools,
        package=str(data.get("package") or ""),
    )


def _read_tool(
    server: str, name: str, raw: Any, shared: Mapping[str, Parameter], where: str
) -> CatalogTool:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: not a mapping")
    declared = raw.get("declared")
    if declared is not None:
        parameters, annotations, description = _declared(declared, f"{where}.declared")
    else:
        parameters = [
            Parameter(
                key,
                _text(p, "type", f"{where}.{key}"),
                bool(p.get("required")),
                _text(p, "about", f"{where}.{key}"),
            )
            for key, p in _mapping(raw, "parameters", where).items()
        ]
        if raw.get("context"):
            parameters.append(shared["context"])
        annotations, description = dict(_mapping(raw, "annotations", where)), None
    try:
        category = Category(raw.get("category"))
        risk = Risk(raw.get("risk"))
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    read_as = _mapping(raw, "read_as", where)
    return CatalogTool(
        name=name,
        server=server,
        toolset=_text(raw, "toolset", where),
        does=_text(raw, "does", where),
        parameters=tuple(parameters),
        annotations=annotations,
        category=category,
        risk=risk,
        why=tuple(raw.get("why") or ()),
        dangers=tuple(raw.get("dangers") or ()),
        note=raw.get("note"),
        rules=_text(raw, "rules", where),
        hide=bool(raw.get("hide")),
        description=description,
        arguments={str(k): str(v) for k, v in _mapping(raw, "arguments", where).items()},
        read_as={str(k): dict(_mapping(read_as, k, f"{where}.read_as")) for k in read_as},
    )


def _declared(data: Any, where: str) -> tuple[list[Parameter], dict[str, Any], str]:
    """The block the refresh command copies from tools/list; a parameter's ``about`` is
    the server's description of it, which may be empty."""
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: not a mapping")
    parameters = [
        Parameter(
            key, _text(p, "type", f"{where}.input.{key}"), bool(p.get("required")),
            str(p.get("about") or ""),
        )
        for key, p in _mapping(data, "input", where).items()
    ]  # fmt: skip
    annotations = dict(_mapping(data, "annotations", where))
    return parameters, annotations, str(data.get("description") or "")


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: {key} must be a non-empty string")
    return value


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: {key} must be a mapping")
    return value
