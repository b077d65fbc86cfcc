"""A small document model, so that each page is written once and shown three ways:
plain text for a terminal, Markdown, and a self-contained HTML file.

Inline text may hold `code spans` in backticks; Markdown keeps them, HTML turns them into
<code>, plain text keeps the backticks. It may hold links written as in Markdown,
[text](href), which plain text shows as their text (the catalogue site uses them). Table
cells that name a category or a risk get a coloured badge in HTML.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 88


@dataclass(frozen=True, slots=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str


@dataclass(frozen=True, slots=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True, slots=True)
class Facts:
    """Label and value pairs, such as "Category: Write"."""

    rows: Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True, slots=True)
class Code:
    text: str
    language: str = "yaml"


Block = Heading | Paragraph | Bullets | Facts | Table | Code


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    blocks: Sequence[Block]


def render(document: Document, fmt: str) -> str:
    if fmt == "markdown":
        return _markdown(document)
    if fmt == "html":
        return _html(document)
    return _text(document)


# -- plain text -------------------------------------------------------------------------


def _text(document: Document) -> str:
    title = _plain(document.title)
    out = [title, "=" * min(len(title), WIDTH), ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            rule = "-" if block.level <= 2 else "~"
            heading = _plain(block.text)
            out += [heading, rule * min(len(heading), WIDTH)]
        elif isinstance(block, Paragraph):
            out += textwrap.wrap(_plain(block.text), WIDTH, break_on_hyphens=False)
        elif isinstance(block, Bullets):
            for item in block.items:
                out += textwrap.wrap(
                    _plain(item),
                    WIDTH,
                    initial_indent="  - ",
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                )
        elif isinstance(block, Facts):
            width = max(len(label) for label, _ in block.rows) + 2
            for label, value in block.rows:
                out += textwrap.wrap(
                    _plain(value),
                    WIDTH,
                    initial_indent=f"{label + ':':<{width}}",
                    subsequent_indent=" " * width,
                    break_on_hyphens=False,
                ) or [f"{label}:"]
        elif isinstance(block, Table):
            out += _text_table(block)
        else:
            out += ["    " + line if line else "" for line in block.text.rstrip("\n").split("\n")]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _text_table(table: Table) -> list[str]:
    """Columns padded to their widest cell; the last column wraps to the page width, or,
    when too little width is left for it, goes on lines of its own under each row."""
    rows = [[_plain(str(cell)) for cell in row] for row in [table.header, *table.rows]]
    columns = len(table.header)
    widths = [max(len(row[i]) for row in rows) for i in range(columns - 1)]
    lead = sum(widths) + 2 * (columns - 1)
    beside = WIDTH - lead >= 32
    last = WIDTH - lead if beside else WIDTH - 4
    lines = []
    for position, row in enumerate(rows):
        cells = [f"{row[i]:<{widths[i]}}" for i in range(columns - 1)]
        wrapped = textwrap.wrap(row[-1], last, break_on_hyphens=False) or [""]
        if beside:
            lines.append("  ".join([*cells, wrapped[0]]).rstrip())
            lines += [" " * lead + more for more in wrapped[1:]]
        else:
            lines.append("  ".join(cells).rstrip())
            lines += ["    " + more for more in wrapped if position > 0]
        if position == 0:
            rule = ["-" * w for w in widths] + (["-" * min(last, 40)] if beside else [])
            lines.append("  ".join(rule))
    return lines


def _plain(text: str) -> str:
    """Inline text for a terminal: code spans lose their backticks, links their target."""
    return _CODE_SPAN.sub(lambda m: m.group(1), _LINK.sub(lambda m: m.group(1), text))


# -- Markdown ---------------------------------------------------------------------------


def _markdown(document: Document) -> str:
    out = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * (block.level + 1)} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items]
        elif isinstance(block, Facts):
            out += ["| | |", "|---|---|"]
            out += [f"| **{_cell(label)}** | {_cell(value)} |" for label, value in block.rows]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in block.rows]
        else:
            out += [f"```{block.language}", block.text.rstrip("\n"), "```"]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- HTML -------------------------------------------------------------------------------

_BADGES = {
    "Read": "read",
    "Write": "write",
    "Execute": "execute",
    "Destructive": "destructive",
    "Financial": "financial",
    "Low": "low",
    "Medium": "medium",
    "High": "high",
    "Critical": "critical",
}

STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6472; --line: #d9dee7;
  --paper: #ffffff; --wash: #f5f7fa; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--wash); color: var(--ink);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 60rem; margin: 2rem auto; padding: 2rem 2.5rem; background: var(--paper);
  border: 1px solid var(--line); border-radius: 10px; }
h1 { font-size: 1.7rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p, ul { margin: .5rem 0 .9rem; }
li { margin: .2rem 0; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: var(--wash); padding: .05em .3em; border-radius: 4px; }
pre { background: #0f1722; color: #e6edf3; padding: 1rem 1.2rem; border-radius: 8px;
  overflow-x: auto; font: .88rem/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre code { background: none; padding: 0; color: inherit; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .95rem; }
th, td { text-align: left; vertical-align: top; padding: .45rem .6rem;
  border-bottom: 1px solid var(--line); }
th { background: var(--wash); font-weight: 600; }
table.facts th { width: 11rem; background: none; color: var(--muted); font-weight: 500; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 999px;
  font-size: .85rem; font-weight: 600; white-space: nowrap; }
.read, .low { background: #e3f4e8; color: #17612f; }
.write, .medium { background: #fff2d6; color: #7a4d00; }
.destructive, .high { background: #ffe1d6; color: #9a3412; }
.execute, .financial, .critical { background: #fbd9de; color: #8f1328; }
footer { color: var(--muted); font-size: .85rem; margin-top: 2.5rem; }
"""


def _html(document: Document) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(_plain(document.title))}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + html_body(document)
        + "\n<footer>Written by mcpwall.</footer>\n</main>\n</body>\n</html>\n"
    )


def html_body(document: Document) -> str:
    """The document's title and blocks as HTML, for a page that brings its own frame."""
    body: list[str] = [f"<h1>{_inline(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(block.level, 5)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Facts):
            rows = "".join(
                f"<tr><th>{_inline(label)}</th><td>{_html_cell(value)}</td></tr>"
                for label, value in block.rows
            )
            body.append(f'<table class="facts">{rows}</table>')
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_html_cell(str(c))}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
    return "\n".join(body)


def _html_cell(text: str) -> str:
    badge = _BADGES.get(text)
    if badge is not None:
        return f'<span class="badge {badge}">{html.escape(text)}</span>'
    return _inline(text)


_CODE_SPAN = re.compile(r"`([^`]+)`")
# A target has no spaces or brackets, which keeps prose with brackets ("args[*].kind")
# from being read as a link.
_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s\[\]]+)\)")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    coded = _CODE_SPAN.sub(lambda m: f"<code>{m.group(1)}</code>", escaped)
    # The target is escaped already, quotes included, so it is safe inside the attribute.
    return _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', coded)
