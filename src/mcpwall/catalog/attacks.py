"""The attack database: each attack an agent's MCP traffic is exposed to, with the tools
of the catalogue it applies to, a policy that prevents it and the test that shows
mcpwall stopping it.

Which tools an attack applies to is computed from its selectors over what the catalogue
records (category, risk, parameters, annotations), never listed by hand, so that a
server added to the catalogue is covered by every attack at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from mcpwall.catalog.classify import Category, Risk
from mcpwall.catalog.document import Block, Bullets, Code, Document, Heading, Paragraph, Table
from mcpwall.catalog.entries import CatalogError, CatalogTool, UnknownName, servers

FILE = "attacks.yaml"


@dataclass(frozen=True, slots=True)
class ParameterTest:
    name: re.Pattern[str] | None
    types: frozenset[str] | None
    about: re.Pattern[str] | None
    required: bool | None


@dataclass(frozen=True, slots=True)
class Selector:
    """Tools that fit every key given; ``because`` says why the attack concerns them."""

    because: str
    every: bool = False
    categories: frozenset[Category] | None = None
    min_risk: Risk | None = None
    hidden: bool | None = None
    open_world: bool | None = None
    name: re.Pattern[str] | None = None
    parameter: ParameterTest | None = None

    def matches(self, tool: CatalogTool) -> bool:
        if self.every:
            return True
        if self.categories is not None and tool.category not in self.categories:
            return False
        if self.min_risk is not None and tool.risk.level < self.min_risk.level:
            return False
        if self.hidden is not None and tool.hide is not self.hidden:
            return False
        # The MCP spec's default for a missing openWorldHint is true.
        if self.open_world is not None and (
            tool.annotations.get("openWorldHint", True) is not self.open_world
        ):
            return False
        if self.name is not None and not self.name.search(tool.name):
            return False
        return self.parameter is None or any(
            _fits(self.parameter, p.name, p.type, p.about, p.required) for p in tool.parameters
        )


def _fits(test: ParameterTest, name: str, kind: str, about: str, required: bool) -> bool:
    return (
        (test.name is None or test.name.fullmatch(name) is not None)
        and (test.types is None or kind in test.types)
        and (test.about is None or test.about.search(about) is not None)
        and (test.required is None or test.required is required)
    )


@dataclass(frozen=True, slots=True)
class Attack:
    id: str
    title: str
    case: str
    applies_to: tuple[Selector, ...]
    prevention: str  # a whole policy file, valid as written
    prevention_explained: str
    test: str  # a pytest node id
    test_shows: str
    limits: str | None
    references: tuple[str, ...]

    def reason(self, tool: CatalogTool) -> str | None:
        """Why the attack applies to ``tool``, or None when it does not."""
        return next((s.because for s in self.applies_to if s.matches(tool)), None)

    def tools(self) -> list[tuple[CatalogTool, str]]:
        """Every tool of the catalogue it applies to, with the reason, server by server."""
        found = []
        for server in servers():
            for tool in sorted(server.tools.values(), key=lambda t: t.name):
                reason = self.reason(tool)
                if reason is not None:
                    found.append((tool, reason))
        return found


@cache
def attacks() -> tuple[Attack, ...]:
    text = resources.files("mcpwall.catalog").joinpath("data", FILE).read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, list):
        raise CatalogError(f"{FILE}: not a list of attacks")
    found = tuple(_read_attack(item, f"{FILE}: entry {n + 1}") for n, item in enumerate(raw))
    ids = [a.id for a in found]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{FILE}: an id is used twice")
    return found


def find_attack(attack_id: str) -> Attack:
    for attack in attacks():
        if attack.id == attack_id.lower():
            return attack
    close = difflib.get_close_matches(attack_id, [a.id for a in attacks()], n=1)
    raise UnknownName(
        f'the attack database has no attack "{attack_id}"', close[0] if close else None
    )


def attacks_for(tool: CatalogTool) -> list[tuple[Attack, str]]:
    """The attacks that apply to ``tool``, each with the reason."""
    found = []
    for attack in attacks():
        reason = attack.reason(tool)
        if reason is not None:
            found.append((attack, reason))
    return found


# -- pages ------------------------------------------------------------------------------


# Where a page links to another (the catalogue site): an attack's or a tool's address.
AttackLink = Callable[["Attack"], str]
ToolLink = Callable[[CatalogTool], str]


def attacks_document(link: AttackLink | None = None) -> Document:
    rows = [
        [
            _linked(f"`{a.id}`", link and link(a)),
            a.title,
            str(len(a.tools())),
            _first_sentence(a.case),
        ]
        for a in attacks()
    ]
    return Document(
        "The MCP attack database",
        [
            Paragraph(
                "The attacks an agent's MCP traffic is exposed to. Each entry gives the case, "
                "the tools of the catalogue it applies to (computed from their category, risk, "
                "parameters and annotations), a policy that prevents it, which `mcpwall "
                "validate` accepts as written, and the test that shows mcpwall stopping it. "
                "`mcpwall catalog attacks ID` shows one entry."
            ),
            Table(["attack", "title", "tools", "the case"], rows),
        ],
    )


def attacks_json() -> list[dict[str, Any]]:
    return [{"id": a.id, "title": a.title, "tools": len(a.tools())} for a in attacks()]


def attack_document(attack: Attack, link: ToolLink | None = None) -> Document:
    tools = attack.tools()
    blocks: list[Block] = [
        Heading("The case"),
        Paragraph(attack.case),
        Heading("Prevention"),
        Paragraph(
            f"{attack.prevention_explained} The policy below is a whole file; "
            "`mcpwall validate -c FILE` accepts it as written: put your own tool names and "
            "values in."
        ),
        Code(attack.prevention),
        Heading("The test that shows it"),
        Paragraph(f"`{attack.test}`: {attack.test_shows}"),
    ]
    if attack.limits:
        blocks += [Heading("What mcpwall cannot do"), Paragraph(attack.limits)]
    blocks += [Heading(f"Tools it applies to ({len(tools)})")]
    if not tools:
        blocks.append(Paragraph("None in the catalogue."))
    for why in dict.fromkeys(why for _, why in tools):
        blocks += [
            Paragraph(f"Because {why}:"),
            Table(
                ["server", "tool", "category", "risk"],
                [
                    [
                        t.server,
                        _linked(f"`{t.name}`", link and link(t)),
                        t.category.value,
                        t.risk.value,
                    ]
                    for t, reason in tools
                    if reason == why
                ],
            ),
        ]
    if attack.references:
        blocks += [Heading("Read more"), Bullets(list(attack.references))]
    return Document(f"{attack.title} (`{attack.id}`)", blocks)


def attack_json(attack: Attack) -> dict[str, Any]:
    return {
        "id": attack.id,
        "title": attack.title,
        "case": attack.case,
        "prevention": {"explanation": attack.prevention_explained, "policy": attack.prevention},
        "test": {"node": attack.test, "shows": attack.test_shows},
        "limits": attack.limits,
        "references": list(attack.references),
        "tools": [{"server": t.server, "tool": t.name, "why": why} for t, why in attack.tools()],
    }


def tool_attack_blocks(tool: CatalogTool, link: AttackLink | None = None) -> list[Block]:
    """The section of a tool's page that names the attacks that apply to it."""
    found = attacks_for(tool)
    return [
        Heading("Attacks that apply"),
        Paragraph(
            "From mcpwall's attack database; "
            + ("each entry gives" if link else "`mcpwall catalog attacks ID` gives")
            + " the case, a policy that prevents it and the test that shows mcpwall stopping it."
        ),
        Table(
            ["attack", "title", "why it applies"],
            [[_linked(f"`{a.id}`", link and link(a)), a.title, why] for a, why in found],
        ),
    ]


def _linked(text: str, target: str | None) -> str:
    return f"[{text}]({target})" if target else text


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".") + "."


# -- reading the file -------------------------------------------------------------------


def _read_attack(raw: Any, where: str) -> Attack:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: not a mapping")
    where = f"{FILE}: {raw.get('id', where)}"
    prevention = _mapping(raw, "prevention", where)
    test = _mapping(raw, "test", where)
    selectors = raw.get("applies_to")
    if not isinstance(selectors, list) or not selectors:
        raise CatalogError(f"{where}: applies_to must be a non-empty list")
    return Attack(
        id=_text(raw, "id", where),
        title=_text(raw, "title", where),
        case=_text(raw, "case", where),
        applies_to=tuple(_read_selector(s, f"{where}: applies_to") for s in selectors),
        prevention=_text(prevention, "policy", where),
        prevention_explained=_text(prevention, "explanation", where),
        test=_text(test, "node", where),
        test_shows=_text(test, "shows", where),
        limits=raw.get("limits"),
        references=_texts(raw, "references", where),
    )


_SELECTOR_KEYS = {
    "because", "every", "category", "min_risk", "hidden", "open_world", "name", "parameter"
}  # fmt: skip


def _read_selector(raw: Any, where: str) -> Selector:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a selector must be a mapping")
    unknown = set(raw) - _SELECTOR_KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown selector keys {sorted(unknown)}")
    try:
        categories = raw.get("category")
        risk = raw.get("min_risk")
        parameter = raw.get("parameter")
        return Selector(
            because=_text(raw, "because", where),
            every=bool(raw.get("every")),
            categories=None if categories is None else frozenset(map(Category, categories)),
            min_risk=None if risk is None else Risk(risk),
            hidden=raw.get("hidden"),
            open_world=raw.get("open_world"),
            name=_pattern(raw.get("name")),
            parameter=None if parameter is None else _read_parameter_test(parameter),
        )
    except (ValueError, TypeError, re.error) as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _read_parameter_test(raw: Mapping[str, Any]) -> ParameterTest:
    types: Sequence[str] | None = raw.get("type")
    return ParameterTest(
        name=_pattern(raw.get("name")),
        types=None if types is None else frozenset(types),
        about=_pattern(raw.get("about")),
        required=raw.get("required"),
    )


def _pattern(text: str | None) -> re.Pattern[str] | None:
    return None if text is None else re.compile(text, re.IGNORECASE)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: {key} must be a non-empty string")
    return value


def _texts(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: {key} must be a mapping")
    return value
