"""The catalogue's pages, as documents (for text, Markdown and HTML) and as JSON.

A tool's page answers what a user asks before letting an agent near the tool: what it
does, how dangerous it is and why, and how to allow, deny, hide, rate-limit it or
restrict its arguments, each with a policy that validates as written.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcpwall.catalog.classify import CAUTION_ORDER, Classification, classify
from mcpwall.catalog.document import (
    Block,
    Bullets,
    Code,
    Document,
    Facts,
    Heading,
    Paragraph,
    Table,
)
from mcpwall.catalog.entries import CatalogServer, CatalogTool, servers
from mcpwall.catalog.scaffold import SUGGESTED_RATE


@dataclass(frozen=True, slots=True)
class Snippet:
    title: str
    explanation: str
    policy: str  # a whole policy file, valid as written


# -- the catalogue ----------------------------------------------------------------------


def servers_document() -> Document:
    rows = [
        [f"`{s.name}`", s.version, str(len(s.tools)), ", ".join(s.aliases), s.title]
        for s in servers()
    ]
    return Document(
        "The mcpwall catalogue",
        [
            Paragraph(
                "MCP servers whose every tool mcpwall has classified by hand, with the rules "
                "we suggest. `mcpwall catalog SERVER` lists a server's tools, "
                "`mcpwall catalog SERVER TOOL` shows one tool's page."
            ),
            Table(["server", "version", "tools", "also known as", "what it is"], rows),
        ],
    )


def servers_json() -> list[dict[str, Any]]:
    return [
        {
            "server": s.name,
            "title": s.title,
            "version": s.version,
            "aliases": list(s.aliases),
            "tools": len(s.tools),
        }
        for s in servers()
    ]


def server_document(server: CatalogServer) -> Document:
    tools = sorted(server.tools.values(), key=lambda t: (t.toolset, t.name))
    counts = Counter(t.category for t in tools)
    summary = ", ".join(f"{counts[c]} {c}" for c in CAUTION_ORDER if counts[c])
    rows = []
    for tool in tools:
        automatic = classify(tool.facts())
        hints = f"{automatic.category} / {automatic.risk}" if _disagrees(tool, automatic) else ""
        rows.append(
            [
                f"`{tool.name}`",
                tool.toolset,
                tool.category.value,
                tool.risk.value,
                hints,
                _first_sentence(tool.does),
            ]
        )
    blocks: list[Block] = [
        Facts(
            [
                ("Server", f"`{server.name}` {server.version}"),
                ("Project", server.project),
                ("Also known as", ", ".join(f"`{a}`" for a in server.aliases)),
                ("Tools", f"{len(tools)}: {summary}"),
            ]
        ),
        Paragraph(server.about),
        Paragraph(server.listing),
        Heading("Tools"),
        Paragraph(
            '"Hints alone say" is what mcpwall\'s classifier makes of what the server '
            "declares (annotations, name, parameters) where that differs from our "
            f"classification; each tool's page says why. `mcpwall catalog {server.name} "
            "TOOL` shows a tool's page."
        ),
        Table(["tool", "toolset", "category", "risk", "hints alone say", "what it does"], rows),
        Heading("Before you allow any of them"),
        Bullets(list(server.notes)),
    ]
    return Document(f"{server.title} ({server.name} {server.version})", blocks)


def server_json(server: CatalogServer) -> dict[str, Any]:
    return {
        "server": server.name,
        "title": server.title,
        "version": server.version,
        "project": server.project,
        "aliases": list(server.aliases),
        "about": server.about,
        "listing": server.listing,
        "notes": list(server.notes),
        "toolsets": dict(server.toolsets),
        "tools": [
            {
                "name": t.name,
                "toolset": t.toolset,
                "category": t.category.value,
                "risk": t.risk.value,
                "does": t.does,
            }
            for t in sorted(server.tools.values(), key=lambda t: t.name)
        ],
    }


def tool_document(server: CatalogServer, tool: CatalogTool) -> Document:
    automatic = classify(tool.facts())
    blocks: list[Block] = [
        Facts(
            [
                ("Tool", f"`{tool.name}`"),
                ("Server", f"{server.title} (`{server.name}` {server.version})"),
                ("Toolset", f"{tool.toolset}: {server.toolsets.get(tool.toolset, '')}"),
                ("Category", tool.category.value),
                ("Risk", tool.risk.value),
            ]
        ),
        Heading("What it does"),
        Paragraph(tool.does),
        Heading("Parameters"),
    ]
    if tool.parameters:
        blocks.append(
            Table(
                ["parameter", "type", "required", "meaning"],
                [
                    [f"`{p.name}`", p.type, "yes" if p.required else "no", p.about]
                    for p in tool.parameters
                ],
            )
        )
    else:
        blocks.append(Paragraph("None."))
    blocks += [
        Heading(f"Why {tool.category} and {tool.risk}"),
        Bullets(list(tool.why)),
    ]
    if tool.note:
        blocks += [Heading("Watch out"), Paragraph(tool.note)]
    blocks += [Heading("What can go wrong"), Bullets(list(tool.dangers))]
    blocks += _evidence_blocks(tool, automatic)
    blocks.append(Heading("Policy"))
    blocks.append(
        Paragraph(
            f"Each snippet is a whole policy file; `mcpwall validate -c FILE` accepts it as "
            f"written. Put mcpwall in front of the server with "
            f"`mcpwall -c FILE -- npx -y {server.name}`, and ask how it decides a call "
            f"with `mcpwall check -c FILE {tool.name} --args '{{...}}'`."
        )
    )
    for snippet in snippets(tool):
        blocks += [Heading(snippet.title, 3), Paragraph(snippet.explanation), Code(snippet.policy)]
    return Document(f"{tool.name}: {tool.category} / {tool.risk}", blocks)


def tool_json(server: CatalogServer, tool: CatalogTool) -> dict[str, Any]:
    return {
        "server": server.name,
        "server_version": server.version,
        "tool": tool.name,
        "toolset": tool.toolset,
        "does": tool.does,
        "parameters": [
            {"name": p.name, "type": p.type, "required": p.required, "about": p.about}
            for p in tool.parameters
        ],
        "annotations": dict(tool.annotations),
        "category": tool.category.value,
        "risk": tool.risk.value,
        "why": list(tool.why),
        "dangers": list(tool.dangers),
        "note": tool.note,
        "automatic": classify(tool.facts()).as_json(),
        "snippets": [
            {"title": s.title, "explanation": s.explanation, "policy": s.policy}
            for s in snippets(tool)
        ],
    }


def snippets(tool: CatalogTool) -> list[Snippet]:
    name = tool.name
    calls, window = SUGGESTED_RATE[tool.category]
    found: list[Snippet] = []
    if tool.hide:
        found += [
            Snippet(
                "What we suggest",
                "Hide it: the tool vanishes from the agent's tools/list and every call is refused.",
                _policy(name, ""),
            ),
            Snippet(
                "If you keep it visible",
                _rules_explained(tool),
                _policy(name, tool.rules, read_as=tool.read_as),
            ),
        ]
    else:
        found.append(
            Snippet(
                "What we suggest",
                _rules_explained(tool),
                _policy(name, tool.rules, read_as=tool.read_as),
            )
        )
    found += [
        Snippet(
            "Allow it",
            "Lists the tool, so that it passes under default: deny. An allow never overrides "
            "a deny elsewhere in the policy.",
            _policy(name, "- action: allow\n", default_deny=True),
        ),
        Snippet(
            "Rate-limit it",
            f"At most {calls} calls per {_seconds(window)} per agent session (a stdio "
            "connection is one session); a refused agent is told when to retry.",
            _policy(name, f"- action: allow\n- rate_limit: {{max: {calls}, window: {window}}}\n"),
        ),
        Snippet(
            "Deny it",
            "Every call is refused with this reason, which the agent reads; the tool stays "
            "in tools/list.",
            _policy(name, f"- action: deny\n  reason: {json.dumps(_deny_reason(tool))}\n"),
        ),
    ]
    if not tool.hide:
        found.append(
            Snippet(
                "Hide it",
                "The tool is removed from tools/list and every call is refused.",
                _policy(name, ""),
            )
        )
    return found


def _rules_explained(tool: CatalogTool) -> str:
    if tool.read_as:
        arguments = (
            "mcpwall first reads "
            + ", ".join(f"`{name}`" for name in tool.read_as)
            + " as the server will (the policy's `arguments:` block), so the conditions "
            "judge the parsed fields, however the text is spelled; text it cannot read "
            "exactly one way is refused. A condition on a missing field fails closed."
        )
    elif "args." in tool.rules:
        arguments = (
            "Their conditions restrict the call's arguments: a condition on a missing "
            "argument fails, so an omitted namespace is refused rather than left to the "
            "server's default (fail closed)."
        )
    elif not tool.parameters:
        arguments = "It takes no arguments to restrict."
    else:
        arguments = "Its arguments carry nothing worth restricting."
    return (
        f"The rules we would start from; rules run in order and the first that denies wins. "
        f"{arguments} Put your own namespaces, names and limits in."
    )


def _policy(
    tool: str,
    rules: str,
    default_deny: bool = False,
    read_as: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    head = 'version: "1"\n'
    if default_deny:
        head += "default: deny\n"
    if not rules:
        return head + f"hide: [{tool}]\ntools: {{}}\n"
    body = textwrap.indent(rules.rstrip("\n") + "\n", "      ")
    return head + f"tools:\n  {tool}:\n{arguments_block(read_as or {})}    rules:\n{body}"


def arguments_block(read_as: Mapping[str, Mapping[str, Any]]) -> str:
    """A tool's ``arguments:`` block of a policy (indented under the tool's key), or
    nothing when no argument needs reading as structured text."""
    if not read_as:
        return ""
    lines = ["    arguments:"]
    for name, how in read_as.items():
        fields = ", ".join(f"{key}: {json.dumps(value)}" for key, value in how.items())
        lines.append(f"      {json.dumps(name)}: {{{fields}}}")
    return "\n".join(lines) + "\n"


def _deny_reason(tool: CatalogTool) -> str:
    return f"{tool.name} is {tool.category} with {tool.risk} risk and not permitted via AI agents"


def _seconds(window: int) -> str:
    if window % 3600 == 0:
        return "hour" if window == 3600 else f"{window // 3600} hours"
    if window % 60 == 0:
        return "minute" if window == 60 else f"{window // 60} minutes"
    return f"{window} s"


def _evidence_blocks(tool: CatalogTool, automatic: Classification) -> list[Block]:
    verdict = f"{automatic.category} / {automatic.risk}"
    if _disagrees(tool, automatic):
        comparison = (
            f"It says {verdict}; the catalogue files the tool as {tool.category} / "
            f"{tool.risk}, for the reasons above. Annotations are hints the server chose "
            "to send, which is why the catalogue exists."
        )
    else:
        comparison = f"It says {verdict}, as the catalogue does."
    blocks: list[Block] = [
        Heading("What the server declares"),
        Paragraph(
            "mcpwall's classifier reads what the server declares about the tool (its "
            "annotations, its name, the shape of its parameters and, where the catalogue "
            f"keeps a copy, its description). {comparison}"
        ),
        Table(
            ["signal", "seen", "meaning"],
            [[s.source, s.observed, s.meaning] for s in automatic.signals],
        ),
    ]
    if automatic.flags:
        blocks += [Paragraph("Where the signals disagree:"), Bullets(list(automatic.flags))]
    return blocks


def _disagrees(tool: CatalogTool, automatic: Classification) -> bool:
    return (automatic.category, automatic.risk) != (tool.category, tool.risk)


def _first_sentence(text: str) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence + "."
