"""The scan report: what `mcpwall scan` found, as a document (Markdown, HTML) and as
JSON. The tools come most dangerous first, the flagged ones are repeated at the top,
and every signal behind every verdict is shown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from mcpwall.catalog.classify import CAUTION_ORDER
from mcpwall.catalog.document import Block, Bullets, Document, Facts, Heading, Paragraph, Table
from mcpwall.catalog.scaffold import treatment
from mcpwall.catalog.scan import ScannedTool, ScanResult


def scan_document(result: ScanResult) -> Document:
    counts = Counter(t.category for t in result.tools)
    flagged = [t for t in result.tools if t.flags]
    source = (
        f"the categories and risks of catalogued tools are the {result.catalogue.name} "
        f"{result.catalogue.version} catalogue's; the others are the classifier's"
        if result.catalogue
        else "not in the catalogue: every category and risk is the classifier's"
    )
    blocks: list[Block] = [
        Facts(
            [
                ("Server", f"{result.server_name or '(unnamed)'} {result.server_version}".strip()),
                ("Reached through", f"`{result.target.describe()}`"),
                ("Protocol", result.protocol_version),
                ("Tools", str(len(result.tools))),
                ("Flagged", str(len(flagged))),
                ("Classification", source),
            ]
        ),
        Heading("By category"),
        Table(
            ["category", "tools", "in the policy scaffold"],
            [
                [c.value, str(counts[c]), _treatments(t for t in result.tools if t.category is c)]
                for c in CAUTION_ORDER
                if counts[c]
            ],
        ),
        Heading("Tools"),
        Table(
            ["tool", "category", "risk", "scaffold", "flags", "why"],
            [
                [
                    f"`{t.name}`",
                    t.category.value,
                    t.risk.value,
                    treatment(t).value,
                    str(len(t.flags)) if t.flags else "",
                    t.reasons[0] if t.reasons else "",
                ]
                for t in _by_caution(result)
            ],
        ),
    ]
    if result.not_offered:
        blocks += [
            Heading("Catalogued, not offered"),
            Paragraph(
                "The catalogue knows these tools, but this server did not list them "
                "(a toolset not enabled, or a removed tool): "
                + ", ".join(f"`{n}`" for n in result.not_offered)
            ),
        ]
    if flagged:
        blocks.append(Heading("Flagged: look at these first"))
        for tool in flagged:
            blocks += [Heading(f"`{tool.name}`", 3), Bullets(list(tool.flags))]
    blocks.append(Heading("Evidence"))
    for tool in _by_caution(result):
        blocks += [
            Heading(f"`{tool.name}`: {tool.category} / {tool.risk}", 3),
            Bullets(list(tool.reasons)),
            Table(
                ["signal", "seen", "meaning"],
                [[s.source, s.observed, s.meaning] for s in tool.automatic.signals],
            ),
        ]
    title = f"mcpwall scan: {result.server_name or result.target.describe()}"
    return Document(title, blocks)


def _treatments(tools: Iterable[ScannedTool]) -> str:
    counts = Counter(treatment(t) for t in tools)
    return ", ".join(f"{count} {chosen}" for chosen, count in counts.most_common())


def _by_caution(result: ScanResult) -> list[ScannedTool]:
    return sorted(
        result.tools,
        key=lambda t: (-CAUTION_ORDER.index(t.category), -t.risk.level, t.name),
    )


def scan_json(result: ScanResult) -> dict[str, Any]:
    return {
        "server": {
            "name": result.server_name,
            "version": result.server_version,
            "protocol_version": result.protocol_version,
            "target": result.target.describe(),
        },
        "catalogue": (
            {"server": result.catalogue.name, "version": result.catalogue.version}
            if result.catalogue
            else None
        ),
        "tools": [
            {
                "name": t.name,
                "category": t.category.value,
                "risk": t.risk.value,
                "classified_by": "catalogue" if t.catalogued else "classifier",
                "reasons": list(t.reasons),
                "flags": list(t.flags),
                "automatic": t.automatic.as_json(),
                "declared": dict(t.declared),
            }
            for t in result.tools
        ],
        "not_offered": list(result.not_offered),
    }
