"""The policy scaffold `mcpwall scan` writes: every tool the server listed, grouped by
category, each with rules that follow from its category and risk and a comment that says
why, so that the file is a reviewed starting point rather than a blank page.

Reads are allowed (rate-limited when their risk is High), writes rate-limited per agent
session, destructive and financial tools denied, tools that run code and anything
Critical hidden. The scaffold is ``default: deny``: a tool the server adds later is
refused until someone lists it. It validates as written.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from enum import StrEnum

from mcpwall.catalog.classify import CAUTION_ORDER, Category, Risk
from mcpwall.catalog.scan import ScannedTool, ScanResult

# What we suggest per category: calls per window (seconds), tracked per agent session.
# A read of High risk gets half the read rate.
SUGGESTED_RATE = {
    Category.READ: (60, 60),
    Category.WRITE: (10, 60),
    Category.DESTRUCTIVE: (5, 600),
    Category.FINANCIAL: (5, 3600),
    Category.EXECUTE: (5, 3600),
}


class Treatment(StrEnum):
    ALLOW = "allowed"
    LIMIT = "rate-limited"
    DENY = "denied"
    HIDE = "hidden"


def treatment(tool: ScannedTool) -> Treatment:
    if tool.category is Category.EXECUTE or tool.risk is Risk.CRITICAL:
        return Treatment.HIDE
    if tool.category in (Category.DESTRUCTIVE, Category.FINANCIAL):
        return Treatment.DENY
    if tool.category is Category.WRITE or tool.risk is Risk.HIGH:
        return Treatment.LIMIT
    return Treatment.ALLOW


# Execute tools are always hidden, so they never form a group under tools:.
_GROUP_HEADINGS = {
    Category.READ: "Read: allowed; High-risk reads are rate-limited, restrict their arguments",
    Category.WRITE: "Write: allowed, rate-limited per agent session",
    Category.DESTRUCTIVE: "Destructive: denied until someone reviews them",
    Category.FINANCIAL: "Financial: denied; to allow one, cap what it can spend",
}
_SPEND_CAP_EXAMPLE = """\
# A spend cap, if its amount argument is in cents: each call at most $500.00, and at
# most $10,000.00 a day (in place of the entry below):
#   {key}:
#     rules:
#       - name: max single amount
#         conditions: [{{path: args.amount, op: lte, value: 50000}}]
#         on_deny: "A single amount cannot exceed $500.00"
#       - name: daily spend cap
#         conditions: [{{path: state.{name}.daily_spend, op: lte, value: 1000000}}]
#         state: {{counter: daily_spend, window: day, increment_from: args.amount}}
"""
_SESSION_CEILING = (120, 60)


def scaffold(result: ScanResult) -> str:
    # A name listed twice would be a duplicate key, which no policy accepts: first wins.
    unique: dict[str, ScannedTool] = {}
    for tool in result.tools:
        unique.setdefault(tool.name, tool)
    named = [t for t in unique.values() if _key(t.name) is not None]
    unnamable = [name for name in unique if _key(name) is None]
    hidden = [t for t in named if treatment(t) is Treatment.HIDE]
    listed = [t for t in named if treatment(t) is not Treatment.HIDE]
    # The server chose its name: one line, so that it cannot break out of a comment.
    server = " ".join(
        (
            f"{result.server_name} {result.server_version}".strip() or result.target.describe()
        ).split()
    )
    out = [_header(result, server), 'version: "1"']
    out.append(f"description: {json.dumps(f'Scaffold for {server}, written by mcpwall scan')}")
    out += [
        "# deny: a tool the server adds later is refused until it is listed here.",
        "default: deny",
        "",
    ]
    for name in unnamable:
        out.append(
            f"# {json.dumps(name)}: its name has glob characters, so no policy key can name "
            "it alone"
        )
    if hidden:
        out += [
            "# Hidden: removed from tools/list, every call refused. They run code the agent",
            "# chooses (Execute) or can hand over the whole system (Critical). To allow one,",
            "# remove it here and give it rules under tools:.",
            "hide:",
        ]
        for tool in sorted(hidden, key=lambda t: t.name):
            out += _comment(_verdict(tool), "  ")
            out.append(f"  - {_key(tool.name)}")
        out.append("")
    out.append("tools:")
    for category in CAUTION_ORDER:
        group = sorted((t for t in listed if t.category is category), key=lambda t: t.name)
        if not group:
            continue
        out.append(f"  # -- {_GROUP_HEADINGS[category]}")
        for tool in group:
            out += _entry(tool, result)
        out.append("")
    calls, window = _SESSION_CEILING
    out += [
        "  # Every call, whatever the tool: a ceiling against agents caught in a loop.",
        '  "*":',
        "    rules:",
        "      - name: session ceiling",
        f"        rate_limit: {{max: {calls}, window: {window}}}",
    ]
    return "\n".join(out) + "\n"


def _header(result: ScanResult, server: str) -> str:
    counts = Counter(t.category for t in result.tools)
    summary = ", ".join(f"{counts[c]} {c}" for c in CAUTION_ORDER if counts[c]) or "no tools"
    flagged = sum(1 for t in result.tools if t.flags)
    source = (
        f"Catalogued tools carry the {result.catalogue.name} {result.catalogue.version} "
        "catalogue's category and risk; the others the classifier's."
        if result.catalogue
        else "Categories and risks come from mcpwall's classifier."
    )
    lines = [
        f"Policy scaffold for {server}, written by mcpwall scan",
        f"from {' '.join(result.target.describe().split())}.",
        f"{len(result.tools)} tools: {summary}; {flagged} flagged (marked FLAGGED below).",
        source,
        "Review it, then check it before use:",
        "  mcpwall validate -c THIS_FILE",
        "  mcpwall check -c THIS_FILE TOOL --args '{...}'",
    ]
    return "\n".join("# " + line for line in lines) + "\n"


def _entry(tool: ScannedTool, result: ScanResult) -> list[str]:
    lines = _comment(_verdict(tool), "  ")
    if tool.category is Category.FINANCIAL:
        example = _SPEND_CAP_EXAMPLE.format(key=_key(tool.name), name=tool.name)
        lines += textwrap.indent(example, "  ").rstrip("\n").split("\n")
    lines.append(f"  {_key(tool.name)}:")
    for flag in tool.flags:
        lines += _comment(f"FLAGGED: {flag}", "    ")
    if tool.catalogued is not None and result.catalogue is not None:
        lines.append(f"    # suggested by `mcpwall catalog {result.catalogue.name} {tool.name}`:")
        lines += ["    #   " + line for line in tool.catalogued.rules.rstrip("\n").split("\n")]
    lines.append("    rules:")
    chosen = treatment(tool)
    if chosen is Treatment.DENY:
        reason = f"{tool.name} is {tool.category} ({tool.risk} risk); denied until reviewed"
        lines += ["      - action: deny", f"        reason: {json.dumps(reason)}"]
    else:
        lines.append("      - action: allow")
        if chosen is Treatment.LIMIT:
            calls, window = SUGGESTED_RATE[tool.category]
            if tool.category is Category.READ:
                calls = calls // 2
            lines.append(f"      - rate_limit: {{max: {calls}, window: {window}}}")
    return lines


def _verdict(tool: ScannedTool) -> str:
    return f"{tool.category} / {tool.risk}" + (f": {tool.summary}" if tool.summary else "")


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()),
        88,
        initial_indent=f"{indent}# ",
        subsequent_indent=f"{indent}#   ",
        break_on_hyphens=False,
    )


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Plain words YAML readers could take for something other than a name.
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})


def _key(name: str) -> str | None:
    """The tool's name as a policy key, quoted where YAML needs it; None when it has glob
    characters, which would make the key match other tools too."""
    if any(ch in name for ch in "*?["):
        return None
    if _PLAIN_KEY.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return json.dumps(name)
