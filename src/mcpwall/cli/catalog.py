"""``mcpwall catalog [SERVER [TOOL]]``: the built-in catalogue of MCP servers' tools."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mcpwall.cli.main import UserError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall catalog",
        description="The built-in catalogue: without arguments the servers it knows, with "
        "a server its tools with category and risk, with a tool that tool's page: what it "
        "does, why it has its category and risk, and policy snippets to allow, deny, hide, "
        "rate-limit it or restrict its arguments.",
        epilog="example: mcpwall catalog kubernetes vm_clone --format html > vm_clone.html",
    )
    parser.add_argument("server", nargs="?", help="a server name or alias, e.g. kubernetes")
    parser.add_argument("tool", nargs="?", help="one of the server's tools, e.g. vm_clone")
    parser.add_argument("--format", choices=("text", "markdown", "html", "json"), default="text")
    ns = parser.parse_args(argv)

    from mcpwall.catalog import pages
    from mcpwall.catalog.document import render
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
                document, data = pages.tool_document(server, tool), pages.tool_json(server, tool)
    except UnknownName as exc:
        hint = f'; did you mean "{exc.suggestion}"?' if exc.suggestion else ""
        listing = "mcpwall catalog" if ns.tool is None else f"mcpwall catalog {ns.server}"
        raise UserError(f"{exc}{hint} ({listing} lists them)") from None
    if ns.format == "json":
        _write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        _write(render(document, ns.format))
    return 0


def _write(text: str) -> None:
    """Print a page; a reader that stops early (mcpwall catalog ... | head) is no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would fail again flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
