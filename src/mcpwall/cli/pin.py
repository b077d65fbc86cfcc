"""``mcpwall pin``: the pinned tool definitions in the state store, and approving the
changed ones."""

from __future__ import annotations

import argparse
import json

from mcpwall.cli.main import UserError, add_state_options, state_options
from mcpwall.engine.pins import accept, listing
from mcpwall.state.base import CounterStore, StoreUnavailable


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall pin",
        description="Tool pinning: mcpwall remembers each server's tool definitions the "
        "first time it sees them, and reports a later change (a 'rug pull'); under "
        "pin: enforce the changed tool is held back until its new definition is accepted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,accept}")
    shown = commands.add_parser("list", help="every pinned tool, the changed ones first")
    shown.add_argument("--json", action="store_true", help="print the pins as JSON")
    approve = commands.add_parser("accept", help="accept the changed definitions")
    approve.add_argument(
        "tools", nargs="*", metavar="TOOL", help="the tools to accept (default: every changed one)"
    )
    for sub in (shown, approve):
        sub.add_argument(
            "--server",
            metavar="NAME",
            help="only this server: its --server-name, else its command line or URL",
        )
        add_state_options(sub)
    ns = parser.parse_args(argv)

    options = state_options(ns)
    gate = options.gate()
    try:
        store = gate.store()
        if ns.command == "accept":
            return _accept(store, options.prefix, ns.server, ns.tools)
        return _list(store, options.prefix, ns.server, ns.json)
    except StoreUnavailable as exc:
        raise UserError(f"the state store is unavailable: {exc}") from None
    finally:
        gate.close()


def _accept(store: CounterStore, prefix: str, server: str | None, tools: list[str]) -> int:
    approved = accept(store, prefix, server, tools)
    if not approved:
        print(
            "nothing to accept: no pinned tool has a changed definition"
            + (f" among {', '.join(tools)}" if tools else "")
        )
        return 1
    for name in approved:
        server_name, _, tool = name.rpartition("|")
        print(f"accepted the new definition of {tool} ({server_name})")
    return 0


def _list(store: CounterStore, prefix: str, server: str | None, as_json: bool) -> int:
    pins = [
        (server_name, tool, pin)
        for server_name, tool, pin in listing(store, prefix)
        if server is None or server_name == server
    ]
    pins.sort(key=lambda item: (item[2].pending is None, item[0], item[1]))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "server": server_name,
                        "tool": tool,
                        "changed": pin.changed_fields,
                        "changed_at": pin.changed_at,
                    }
                    for server_name, tool, pin in pins
                ],
                indent=2,
            )
        )
        return 0
    if not pins:
        print("no pinned tools yet: mcpwall pins a server's tools when it first lists them")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Pinned tools", title_justify="left")
    for column in ("server", "tool", "state"):
        table.add_column(column, overflow="fold")
    for server_name, tool, pin in pins:
        state = "as pinned"
        if pin.pending is not None:
            state = "[red]changed:[/] " + ", ".join(pin.changed_fields)
        table.add_row(server_name, tool, state)
    Console().print(table)
    return 0
