"""``mcpwall catalog [SERVER [TOOL]]``: the built-in catalogue of MCP servers' tools;
``mcpwall catalog attacks [ID]``: the attack database; ``mcpwall catalog site DIR``: all
of it as a static site."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcpwall.cli.main import UserError, write_out

if TYPE_CHECKING:
    from mcpwall.catalog.document import Document
    from mcpwall.catalog.entries import UnknownName

FORMATS = ("text", "markdown", "html", "json")


def run(argv: list[str]) -> int:
    if argv[:1] == ["attacks"]:
        return _attacks(argv[1:])
    if argv[:1] == ["site"]:
        return _site(argv[1:])
    parser = argparse.ArgumentParser(
        prog="mcpwall catalog",
        description="The built-in catalogue: without arguments the servers it knows, with "
        "a server its tools with category and risk, with a tool that tool's page: what it "
        "does, why it has its category and risk, the attacks that apply to it, and policy "
        "snippets to allow, deny, hide, rate-limit it or restrict its arguments. "
        "`mcpwall catalog attacks [ID]` shows the attack database, `mcpwall catalog site "
        "DIR` writes the whole catalogue as a static site.",
        epilog="example: mcpwall catalog kubernetes vm_clone --format html > vm_clone.html",
    )
    parser.add_argument("server", nargs="?", help="a server name or alias, e.g. kubernetes")
    parser.add_argument("tool", nargs="?", help="one of the server's tools, e.g. vm_clone")
    parser.add_argument("--format", choices=FORMATS, default="text")
    ns = parser.parse_args(argv)

    from mcpwall.catalog import pages
    from mcpwall.catalog.attacks import attacks_for, tool_attack_blocks
    from mcpwall.catalog.document import Document
    from mcpwall.catalog.entries import UnknownName, find_server

    try:
        if ns.server is None:
            document, data = pages.servers_document(), pages.servers_json()
        else:
            server = find_server(ns.server)
            if ns.tool is None:
                document, data = pages.server_document(server), pages.server_json(server)
            else:
                tool = server.tool(ns.tool)
                page = pages.tool_document(server, tool)
                document = Document(page.title, [*page.blocks, *tool_attack_blocks(tool)])
                data = pages.tool_json(server, tool)
                data["attacks"] = [
                    {"id": a.id, "title": a.title, "why": why} for a, why in attacks_for(tool)
                ]
    except UnknownName as exc:
        listing = "mcpwall catalog" if ns.tool is None else f"mcpwall catalog {ns.server}"
        raise _unknown(exc, listing) from None
    _show(document, data, ns.format)
    return 0


def _attacks(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall catalog attacks",
        description="The attack database: without an id every attack with the number of "
        "catalogued tools it applies to; with one, its case, the tools it applies to, a "
        "policy that prevents it and the test that shows mcpwall stopping it.",
        epilog="example: mcpwall catalog attacks rug-pull",
    )
    parser.add_argument("id", nargs="?", help="an attack's id, e.g. rug-pull")
    parser.add_argument("--format", choices=FORMATS, default="text")
    ns = parser.parse_args(argv)

    from mcpwall.catalog import attacks
    from mcpwall.catalog.entries import UnknownName

    if ns.id is None:
        _show(attacks.attacks_document(), attacks.attacks_json(), ns.format)
        return 0
    try:
        attack = attacks.find_attack(ns.id)
    except UnknownName as exc:
        raise _unknown(exc, "mcpwall catalog attacks") from None
    _show(attacks.attack_document(attack), attacks.attack_json(attack), ns.format)
    return 0


def _site(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall catalog site",
        description="Write the catalogue as a static site into DIR: an index of the "
        "servers, a page per server (its tools, filterable by category and risk, and its "
        "ready policy to download), a page per tool, the attack database and a search box. "
        "It needs no server and no network: open DIR/index.html in a browser.",
        epilog="example: mcpwall catalog site ./catalogue && xdg-open catalogue/index.html",
    )
    parser.add_argument("directory", help="where to write the site (created if missing)")
    ns = parser.parse_args(argv)

    from mcpwall.catalog.site import write_site

    target = Path(ns.directory)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a directory")
    try:
        written = write_site(target)
    except OSError as exc:
        raise UserError(f"cannot write the site into {target}: {exc.strerror or exc}") from None
    write_out(f"wrote {written} pages into {target}; open {target / 'index.html'}\n")
    return 0


def _unknown(exc: UnknownName, listing: str) -> UserError:
    hint = f'; did you mean "{exc.suggestion}"?' if exc.suggestion else ""
    return UserError(f"{exc}{hint} ({listing} lists them)")


def _show(document: Document, data: Any, fmt: str) -> None:
    from mcpwall.catalog.document import render

    if fmt == "json":
        write_out(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        write_out(render(document, fmt))
