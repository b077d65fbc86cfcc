"""``mcpwall status``: instances, calls, denials and their reasons, from the audit logs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mcpwall.ops.audit import DEFAULT_RETENTION_DAYS, default_events_dir, prune
from mcpwall.ops.status import Summary, summarize

SHOWN_INSTANCES = 10


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall status",
        description="Summarise the audit logs: mcpwall instances (running or not), calls, "
        "denials by tool and rule, the latest denials with their reasons, approvals, "
        "secrets redacted, and tools whose definition changed since it was pinned.",
    )
    parser.add_argument(
        "--events-dir", metavar="DIR", help="where the audit logs are (default: ~/.mcpwall/events)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--events-retention-days",
        type=float,
        default=DEFAULT_RETENTION_DAYS,
        metavar="DAYS",
        help="delete logs older than this first (default: 7)",
    )
    ns = parser.parse_args(argv)
    directory = Path(ns.events_dir) if ns.events_dir else default_events_dir()
    if directory.is_dir():
        prune(directory, ns.events_retention_days)
    summary = summarize(directory, time.time())
    if ns.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        _print(summary, directory)
    return 0


def _print(summary: Summary, directory: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not summary.instances:
        console.print(f"No mcpwall activity recorded in {directory}.")
        return
    instances = Table(title="Instances (newest first)", title_justify="left")
    for column in (
        "instance",
        "pid",
        "status",
        "policy",
        "started",
        "last seen",
        "calls",
        "denied",
    ):
        instances.add_column(column, overflow="fold")
    for item in summary.instances[:SHOWN_INSTANCES]:
        colour = {"running": "green", "dead": "red"}.get(item.status, "")
        instances.add_row(
            item.id[:8],
            str(item.pid or ""),
            f"[{colour}]{item.status}[/]" if colour else item.status,
            Path(item.policy).name,
            _short(item.started),
            _short(item.last_seen),
            str(item.calls),
            str(item.denials),
        )
    hidden = len(summary.instances) - SHOWN_INSTANCES
    if hidden > 0:
        instances.caption = f"and {hidden} older instance(s); --json lists them all"
    console.print(instances)
    share = f" ({100 * summary.denials / summary.calls:.1f}%)" if summary.calls else ""
    console.print(
        f"\n[bold]{summary.calls}[/] calls, [bold]{summary.denials}[/] denied{share}, "
        f"{summary.upstream_errors} failed upstream, {summary.monitored} would have been "
        f"denied (monitor mode); {summary.calls_last_5_min / 5:.1f} calls a minute over the "
        "last 5 minutes\n"
    )
    if summary.denials_by_rule:
        top = Table(title="Denials by tool and rule", title_justify="left")
        top.add_column("tool")
        top.add_column("denied", justify="right")
        top.add_column("rule")
        top.add_column("denied", justify="right")
        rows = max(len(summary.denials_by_tool), len(summary.denials_by_rule))
        for index in range(rows):
            tool = summary.denials_by_tool[index] if index < len(summary.denials_by_tool) else None
            rule = summary.denials_by_rule[index] if index < len(summary.denials_by_rule) else None
            top.add_row(
                tool[0] if tool else "",
                str(tool[1]) if tool else "",
                rule[0] if rule else "",
                str(rule[1]) if rule else "",
            )
        console.print(top)
        recent = Table(title="Latest denials", title_justify="left")
        for column in ("time", "tool", "rule", "reason"):
            recent.add_column(column, overflow="fold")
        for event in summary.recent_denials:
            recent.add_row(
                _short(str(event["ts"])),
                str(event["tool"]),
                str(event["rule"]),
                str(event["reason"]),
            )
        console.print(recent)
    if summary.approvals or summary.redacted:
        asked = ", ".join(f"{k} {v}" for k, v in sorted(summary.approvals.items()))
        found = ", ".join(f"{k} {v}" for k, v in sorted(summary.redacted.items()))
        console.print(f"\nApprovals: {asked or 'none'}. Secrets redacted: {found or 'none'}.")
    if summary.tool_changes:
        changed = Table(
            title="Tools changed since they were pinned (mcpwall pin list, mcpwall pin accept)",
            title_justify="left",
        )
        for column in ("last seen", "server", "tool", "changed", "action"):
            changed.add_column(column, overflow="fold")
        for change in summary.tool_changes:
            changed.add_row(
                _short(str(change["ts"])),
                str(change["server"]),
                str(change["tool"]),
                ", ".join(change["fields"] or []),
                "held back" if change["held"] else "reported",
            )
        console.print(changed)


def _short(stamp: str) -> str:
    return stamp[5:19].replace("T", " ") if stamp else ""
