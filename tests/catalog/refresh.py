"""Refresh the catalogue from the real servers: `python -m tests.catalog.refresh [KEY...]`.

Starts each server (all of them when no key is given), reads its tools/list, and rewrites
its file in src/mcpwall/catalog/data/: the package version, the server's name and
version, and each tool's ``declared`` block come from the server; everything else (the
category, risk, reasons, dangers, arguments, rules: our judgement) is kept as written. A
tool the server newly lists gets a draft judgement from the classifier, marked
``draft: true``, which the catalogue tests refuse until a person has written it; a tool
the server no longer lists is dropped, and said so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import yaml

from mcpwall.catalog.classify import Category, ToolFacts, classify
from tests.catalog.real_servers import (
    REAL_SERVERS,
    REFRESH,
    Listing,
    RealServer,
    declared,
    list_all,
    real_server,
)

HEADER = """\
# mcpwall's catalogue of {title}.
#
# Written by the mcpwall project. Two kinds of field:
# - read from the real server by `{refresh} {key}`
#   (never edit them by hand): version, package, listing and each tool's `declared`
#   block (the server's description, its annotations exactly, each input parameter
#   summarised, a digest of the schema);
# - our judgement, written by hand and kept by the refresh: per tool the category, the
#   risk and why (the last reason settles the risk), the dangers, the arguments that
#   matter, an optional note where the server's hints mislead, the rules we suggest
#   (a YAML list under tools.<name>.rules), and hide when we suggest hiding the tool.
# tests/catalog/test_drift.py starts the server and fails when it differs from this file.

"""
SERVER_KEYS = ("server", "title", "aliases", "version", "package", "project", "about")
TOOL_KEYS = (
    "toolset", "does", "declared", "category", "risk", "why", "dangers", "arguments",
    "note", "hide", "rules", "draft",
)  # fmt: skip


def refreshed(server: RealServer, listing: Listing, old: Mapping[str, Any]) -> dict[str, Any]:
    """The file's new content: the server's facts from ``listing``, the judgement from
    ``old`` (the file as it was, or empty)."""
    old_tools: Mapping[str, Any] = old.get("tools") or {}
    tools = {
        str(tool["name"]): _tool(tool, old_tools.get(str(tool["name"])) or {})
        for tool in listing.tools
    }
    data: dict[str, Any] = {
        "server": listing.name,
        "title": old.get("title") or listing.name,
        "aliases": old.get("aliases") or sorted({server.key, server.package}),
        "version": listing.version,
        "package": server.pinned(),
        "project": old.get("project") or "TODO",
        "about": old.get("about") or "TODO",
        "listing": (
            f"Read from {server.pinned()}, started as `{server.shown_command()}` with no "
            f"network and dummy credentials: {len(tools)} tools, as the server "
            f"{listing.name} {listing.version} lists them."
        ),
        "notes": old.get("notes") or [],
        "toolsets": old.get("toolsets") or {"all": "the server has no toolsets"},
        "tools": tools,
    }
    return data


def _tool(tool: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    entry = dict(old) if old else _draft(tool)
    entry["declared"] = declared(tool)
    return {key: entry[key] for key in TOOL_KEYS if key in entry}


def _draft(tool: Mapping[str, Any]) -> dict[str, Any]:
    verdict = classify(ToolFacts.from_wire(tool))
    first = str(tool.get("description") or tool["name"]).strip().split("\n")[0]
    allow = verdict.category is Category.READ
    rules = (
        "- action: allow\n"
        if allow
        else f'- action: deny\n  reason: "{tool["name"]} is not yet reviewed"\n'
    )
    return {
        "toolset": "all",
        "does": first,
        "category": verdict.category.value,
        "risk": verdict.risk.value,
        "why": list(verdict.reasons),
        "dangers": [],
        "rules": rules,
        "draft": True,
    }


def render(server: RealServer, data: Mapping[str, Any]) -> str:
    head = HEADER.format(title=data["title"], refresh=REFRESH, key=server.key)
    return head + yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, width=88)


class _Dumper(yaml.SafeDumper):
    """Multi-line text (the rules) as literal blocks, so that the file reads as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def write(server: RealServer, listing: Listing) -> list[str]:
    """Rewrite the server's file; what changed in its list of tools, for the user."""
    path: Path = server.data_file
    old = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = refreshed(server, listing, old or {})
    path.write_text(render(server, data))
    before, after = set((old or {}).get("tools") or {}), set(data["tools"])
    said = [f"{server.key}: {len(after)} tools from {listing.name} {listing.version}"]
    said += [f"  new, drafted (review it): {name}" for name in sorted(after - before)]
    said += [f"  gone, dropped: {name}" for name in sorted(before - after)]
    return said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REFRESH, description=__doc__.split("\n")[0])
    parser.add_argument("keys", nargs="*", metavar="KEY", help="servers to refresh")
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    try:
        chosen = tuple(real_server(k) for k in options.keys) or REAL_SERVERS
    except LookupError as exc:
        parser.error(str(exc))
    listings = anyio.run(list_all, chosen, options.timeout)
    for server in chosen:
        print("\n".join(write(server, listings[server.key])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
