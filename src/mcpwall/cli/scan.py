"""``mcpwall scan``: connect to an MCP server, list and classify every tool, and write a
policy scaffold (YAML) or a report (JSON, Markdown, HTML)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mcpwall.cli.main import UserError, setup_logging, split_command, write_out

if TYPE_CHECKING:
    from mcpwall.catalog.scan import ScanResult

_FORMATS = ("yaml", "json", "markdown", "html")
_BY_SUFFIX = {".json": "json", ".md": "markdown", ".markdown": "markdown", ".html": "html"}


def run(argv: list[str]) -> int:
    own, command = split_command(argv)
    parser = argparse.ArgumentParser(
        prog="mcpwall scan",
        usage="mcpwall scan [options] (-- COMMAND [ARGS...] | --upstream URL)",
        description="Connect to an MCP server, list every tool and classify each one (Read,\n"
        "Write, Execute, Destructive, Financial; Low to Critical risk) with its evidence.\n"
        "Writes a policy scaffold that validates as written, or a report.",
        epilog="examples:\n"
        "  mcpwall scan -o policy.yaml -- npx -y kubernetes-mcp-server\n"
        "  mcpwall scan --upstream https://mcp.example.com/mcp "
        "--header 'Authorization: Bearer TOKEN' -o report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", metavar="URL", help="a server over Streamable HTTP")
    parser.add_argument(
        "--header",
        metavar="'K: V'",
        action="append",
        default=[],
        help="an HTTP header for --upstream (repeatable)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        help="yaml (a policy scaffold, the default), json, markdown or html (reports); "
        "taken from the -o file's suffix when not given",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the server may take to list its tools (default: 30)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "warn"),
        default="warn",
        help="debug: the MCP client's own log too (default: warn)",
    )
    ns = parser.parse_args(own)

    from mcpwall.catalog.scan import ScanError, Target

    target = Target(tuple(command), ns.upstream, _headers(ns.header, ns.upstream))
    if command and ns.upstream:
        raise UserError("give either a server command after -- or --upstream URL, not both")
    if not command and not ns.upstream:
        raise UserError(
            "no server to scan: put its command after --, e.g. mcpwall scan -- npx -y "
            "some-mcp-server, or give --upstream URL"
        )
    if ns.timeout <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    fmt = ns.format or _BY_SUFFIX.get(Path(ns.output or "").suffix.lower(), "yaml")
    _quiet_sdk(ns.log_level)

    from mcpwall.catalog.scan import scan

    with _progress() as progress:
        try:
            result = scan(target, ns.timeout, progress)
        except ScanError as exc:
            raise UserError(str(exc)) from None
    text = _formatted(result, fmt)
    if ns.output is None:
        write_out(text)
        return 0
    try:
        Path(ns.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {ns.output}: {exc.strerror or exc}") from None
    flagged = sum(1 for tool in result.tools if tool.flags)
    print(
        f"mcpwall scan: wrote {ns.output} ({fmt}): {len(result.tools)} tools, {flagged} flagged",
        file=sys.stderr,
    )
    return 0


def _headers(raw: list[str], upstream: str | None) -> dict[str, str]:
    if raw and upstream is None:
        raise UserError("--header applies to --upstream only")
    headers: dict[str, str] = {}
    for item in raw:
        name, colon, value = item.partition(":")
        if not colon or not name.strip() or any(ch.isspace() for ch in name.strip()):
            raise UserError(f"--header must look like 'Name: value', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _quiet_sdk(level: str) -> None:
    """The SDK logs a traceback for every malformed line a server prints; a scan reports
    failures as one sentence instead, unless asked for debug output."""
    if level == "debug":
        setup_logging("debug")
        return
    for name in ("mcp", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    """A spinner with what the scan is doing, when stderr is a terminal (and only then,
    whatever FORCE_COLOR and the like say)."""
    if not sys.stderr.isatty():
        yield lambda _message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("mcpwall scan") as status:
        yield lambda message: status.update(f"mcpwall scan: {message}")


def _formatted(result: ScanResult, fmt: str) -> str:
    from mcpwall.catalog import report
    from mcpwall.catalog.document import render
    from mcpwall.catalog.scaffold import scaffold

    if fmt == "yaml":
        return scaffold(result)
    if fmt == "json":
        return json.dumps(report.scan_json(result), indent=2, ensure_ascii=False) + "\n"
    return render(report.scan_document(result), fmt)
