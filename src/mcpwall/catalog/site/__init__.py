"""``mcpwall catalog site DIR``: the catalogue as a static site that needs no server and no
network: the servers, a page per server with its tools and its ready policy, a page per
tool, the attack database, and a search box over all of them.

Pages are the catalogue's documents (catalog/pages.py, catalog/attacks.py) rendered into
a frame of our own, with links between them; every link is relative, so the site works
from file:// as from any web server. The stylesheet, the script and the search index
are files of the site, never fetched from elsewhere.
"""

from __future__ import annotations

import html
import json
import posixpath
import re
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mcpwall.catalog import pages
from mcpwall.catalog.attacks import (
    Attack,
    attack_document,
    attacks,
    attacks_document,
    tool_attack_blocks,
)
from mcpwall.catalog.classify import CAUTION_ORDER
from mcpwall.catalog.document import (
    STYLE,
    Block,
    Bullets,
    Code,
    Document,
    Facts,
    Heading,
    Paragraph,
    Table,
    html_body,
)
from mcpwall.catalog.entries import CatalogServer, CatalogTool, servers

ASSETS = ("site.css", "site.js")


def write_site(directory: Path) -> int:
    """Write the site into ``directory``; the number of HTML pages written."""
    site = _Addresses.of(servers())
    pages_written = 0

    def page(path: str, document: Document, crumbs: list[tuple[str, str]], kind: str) -> None:
        nonlocal pages_written
        _write(directory / path, _frame(path, document, crumbs, kind))
        pages_written += 1

    page("index.html", _index_document(site), [], "index")
    for server in servers():
        home = site.server(server)
        _write(directory / site.policy(server), ready_policy(server))
        page(home, _server_document(server, site), [(server.title, home)], "server")
        for tool in server.tools.values():
            path = site.tool(tool)
            crumbs = [(server.title, home), (tool.name, path)]
            page(path, _tool_document(server, tool, site), crumbs, "tool")
    page(
        "attacks/index.html",
        attacks_document(link=lambda a: _relative("attacks/index.html", site.attack(a))),
        [("Attacks", "attacks/index.html")],
        "attacks",
    )
    for attack in attacks():
        path = site.attack(attack)
        document = attack_document(attack, link=lambda t, here=path: _relative(here, site.tool(t)))
        page(path, document, [("Attacks", "attacks/index.html"), (attack.title, path)], "attack")
    folder = resources.files("mcpwall.catalog.site")
    for name in ASSETS:
        text = folder.joinpath(name).read_text("utf-8")
        if name == "site.css":
            text = STYLE.strip() + "\n\n" + text
        _write(directory / "assets" / name, text)
    _write(directory / "assets" / "search-index.js", _search_index(site))
    return pages_written


def ready_policy(server: CatalogServer) -> str:
    """The catalogue's advice for every tool of ``server`` as one policy file: only listed
    tools pass, the ones we would hide are hidden, each other tool has the rules we
    suggest, tool definitions are pinned and secrets are taken out of results. It
    validates as written."""
    tools = sorted(server.tools.values(), key=lambda t: (CAUTION_ORDER.index(t.category), t.name))
    hidden = [t for t in tools if t.hide]
    out = [
        f"# The ready policy for {server.title} ({server.name} {server.version}), written",
        "# by mcpwall from its catalogue: every tool with the rules the catalogue suggests.",
        "# Put your own namespaces, paths and limits in, then check it:",
        "#   mcpwall validate -c THIS_FILE",
        'version: "1"',
        "description: "
        + json.dumps(f"Ready policy for {server.title}, from the mcpwall catalogue"),
        "# A tool a later release adds is refused until it is listed here.",
        "default: deny",
        "# A tool whose description or schema changes is held until mcpwall pin accept.",
        "pin: enforce",
        "redact:",
        "  detectors: all",
    ]
    if hidden:
        out.append("hide:")
        for tool in hidden:
            out += _comment(f"{tool.category} / {tool.risk}: {_first_sentence(tool.does)}", "  ")
            out.append(f"  - {json.dumps(tool.name)}")
    out.append("tools:")
    for tool in (t for t in tools if not t.hide):
        out += _comment(f"{tool.category} / {tool.risk}: {_first_sentence(tool.does)}", "  ")
        out.append(f"  {json.dumps(tool.name)}:")
        out += pages.arguments_block(tool.read_as).splitlines()
        out.append("    rules:")
        out.append(textwrap.indent(tool.rules.rstrip("\n"), "      "))
    if not any(not t.hide for t in tools):
        out[-1] = "tools: {}"
    return "\n".join(out) + "\n"


# -- where each page lives ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Addresses:
    """Each page's path from the site's root; names become file names that are safe on
    any file system and unique, whatever the server calls itself or its tools."""

    servers: dict[str, str]
    tools: dict[tuple[str, str], str]

    @classmethod
    def of(cls, catalogue: Iterable[CatalogServer]) -> _Addresses:
        folders: dict[str, str] = {}
        tools: dict[tuple[str, str], str] = {}
        for server in catalogue:
            folders[server.name] = _unique(_slug(server.name), set(folders.values()))
            taken: set[str] = set()
            for name in server.tools:
                file = _unique(_slug(name), taken)
                taken.add(file)
                tools[(server.name, name)] = f"servers/{folders[server.name]}/tools/{file}.html"
        return cls(folders, tools)

    def server(self, server: CatalogServer) -> str:
        return f"servers/{self.servers[server.name]}/index.html"

    def policy(self, server: CatalogServer) -> str:
        return f"servers/{self.servers[server.name]}/{self.servers[server.name]}-policy.yaml"

    def tool(self, tool: CatalogTool) -> str:
        return self.tools[(tool.server, tool.name)]

    def attack(self, attack: Attack) -> str:
        return f"attacks/{_slug(attack.id)}.html"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "page"


def _unique(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


def _relative(here: str, target: str) -> str:
    """The address of ``target`` from the page at ``here``, both paths from the root."""
    return posixpath.relpath(target, posixpath.dirname(here) or ".")


# -- the pages ----------------------------------------------------------------------------


def _index_document(site: _Addresses) -> Document:
    rows = []
    for server in servers():
        counts = Counter(t.category for t in server.tools.values())
        summary = ", ".join(f"{counts[c]} {c}" for c in CAUTION_ORDER if counts[c])
        rows.append(
            [
                f"[{_md(server.title)}]({site.server(server)})",
                f"`{server.name}`",
                server.version,
                str(len(server.tools)),
                summary,
            ]
        )
    total = sum(len(s.tools) for s in servers())
    return Document(
        "The mcpwall catalogue",
        [
            Paragraph(
                f"{len(rows)} MCP servers and every one of their {total} tools, each filed "
                "by category and risk with the reasons, what the server itself declares "
                "and where that misleads, the arguments that matter and policy snippets "
                "that validate as written. Each server has a ready policy to download."
            ),
            Table(["server", "name", "version", "tools", "categories"], rows),
            Heading("The MCP attack database"),
            Paragraph(
                f"[{len(attacks())} attacks](attacks/index.html) an agent's MCP traffic is "
                "exposed to, each with the tools it applies to, a policy that prevents it "
                "and the test that shows mcpwall stopping it."
            ),
        ],
    )


def _server_document(server: CatalogServer, site: _Addresses) -> Document:
    here = site.server(server)
    tools = sorted(server.tools.values(), key=lambda t: (t.toolset, t.name))
    counts = Counter(t.category for t in tools)
    summary = ", ".join(f"{counts[c]} {c}" for c in CAUTION_ORDER if counts[c])
    policy = site.policy(server)
    download = f"[Download the ready policy]({_relative(here, policy)})"
    facts = [
        ("Server", f"`{server.name}` {server.version}"),
        ("Project", f"[{_md(server.project)}]({server.project})"),
        ("Tools", f"{len(tools)}: {summary}"),
    ]
    if server.package:
        facts.insert(2, ("Package", server.package))
    if server.aliases:
        facts.append(("Also known as", ", ".join(f"`{a}`" for a in server.aliases)))
    rows = [
        [
            f"[`{t.name}`]({_relative(here, site.tool(t))})",
            t.toolset,
            t.category.value,
            t.risk.value,
            _first_sentence(t.does),
        ]
        for t in tools
    ]
    text = ready_policy(server)
    blocks: list[Block] = [
        Facts(facts),
        Paragraph(server.about),
        Paragraph(server.listing),
        Paragraph(
            f"{download} (`{policy.rsplit('/', 1)[1]}`): every tool with the rules we "
            "suggest, default deny, hidden where we would hide it; `mcpwall validate` "
            "accepts it as written."
        ),
        Heading("Tools"),
        Table(["tool", "toolset", "category", "risk", "what it does"], rows),
    ]
    if server.notes:
        blocks += [Heading("Before you allow any of them"), Bullets(list(server.notes))]
    blocks += [
        Heading("The ready policy"),
        Paragraph(f"{download}, or copy it from here; run it with `mcpwall -c FILE -- ...`."),
        Code(text),
    ]
    return Document(f"{server.title} ({server.version})", blocks)


def _tool_document(server: CatalogServer, tool: CatalogTool, site: _Addresses) -> Document:
    here = site.tool(tool)
    home = _relative(here, site.server(server))
    page = pages.tool_document(server, tool)
    count = len(server.tools)
    context = Paragraph(
        f"A tool of the [{_md(server.title)}]({home}): [all {count} of its tools]({home}), "
        f"[the full policy for all {count}]({_relative(here, site.policy(server))})."
    )
    others = [
        t
        for s in servers()
        for t in sorted(s.tools.values(), key=lambda t: t.name)
        if t.category is tool.category and t is not tool
    ]
    titles = {s.name: s.title for s in servers()}
    related: list[Block] = [
        Heading(f"Other {tool.category} tools across the catalogue ({len(others)})"),
        Paragraph(
            f"Each is filed {tool.category} for reasons of its own; its page says which "
            "rules fit it."
        ),
        Table(
            ["tool", "server", "category", "risk"],
            [
                [
                    f"[`{t.name}`]({_relative(here, site.tool(t))})",
                    titles[t.server],
                    t.category.value,
                    t.risk.value,
                ]
                for t in others
            ],
        )
        if others
        else Paragraph("None."),
    ]
    attack_blocks = tool_attack_blocks(tool, link=lambda a: _relative(here, site.attack(a)))
    return Document(page.title, [context, *page.blocks, *attack_blocks, *related])


def _md(text: str) -> str:
    """Text that goes inside a link's brackets."""
    return text.replace("[", "(").replace("]", ")")


def _first_sentence(text: str) -> str:
    return " ".join(text.split(". ")[0].rstrip(".").split()) + "."


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text, 88, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ",
        break_on_hyphens=False,
    )  # fmt: skip


# -- the frame, the search index ----------------------------------------------------------


def _frame(path: str, document: Document, crumbs: list[tuple[str, str]], kind: str) -> str:
    root = "../" * path.count("/")
    trail = [f'<a href="{root}index.html">Catalogue</a>']
    for label, target in crumbs[:-1]:
        trail.append(f'<a href="{_relative(path, target)}">{html.escape(label)}</a>')
    if crumbs:
        trail.append(f'<span aria-current="page">{html.escape(crumbs[-1][0])}</span>')
    title = re.sub(r"`([^`]+)`", r"\1", document.title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · mcpwall catalogue</title>
<link rel="stylesheet" href="{root}assets/site.css">
</head>
<body data-root="{root}" data-page="{kind}">
<header class="bar">
<a class="brand" href="{root}index.html">mcpwall catalogue</a>
<nav class="sections">
<a href="{root}index.html">Servers</a> <a href="{root}attacks/index.html">Attacks</a>
</nav>
<form class="search" role="search" action="#">
<input type="search" id="search" placeholder="Search tools, servers, attacks"
 aria-label="Search the catalogue" autocomplete="off">
<ul id="search-results" hidden></ul>
</form>
</header>
<nav class="crumbs" aria-label="Breadcrumb">{" &rsaquo; ".join(trail)}</nav>
<main>
{html_body(document)}
<footer>Written by <code>mcpwall catalog site</code> from the built-in catalogue.</footer>
</main>
<script src="{root}assets/search-index.js"></script>
<script src="{root}assets/site.js"></script>
</body>
</html>
"""


def _search_index(site: _Addresses) -> str:
    """What the search box looks in, as JSON inside a script: a page opened from file://
    may not fetch a JSON file, but it may load a script."""
    entries: list[dict[str, str]] = []
    for server in servers():
        entries.append(
            {
                "kind": "server",
                "name": server.title,
                "about": server.name,
                "url": site.server(server),
            }
        )
        for tool in server.tools.values():
            entries.append(
                {
                    "kind": "tool",
                    "name": tool.name,
                    "about": f"{server.title} · {tool.category} / {tool.risk} · "
                    + _first_sentence(tool.does),
                    "url": site.tool(tool),
                }
            )
    for attack in attacks():
        entries.append(
            {"kind": "attack", "name": attack.title, "about": attack.id, "url": site.attack(attack)}
        )
    return "window.mcpwallSearch = " + json.dumps(entries, ensure_ascii=False) + ";\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
