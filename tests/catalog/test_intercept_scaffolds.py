"""mcpwall's ready policies against PolicyLayer Intercept's published scaffolds, for every
server both cover (docs/catalogue-vs-intercept.md says where they differ and why).

"At least as strict" means, for an Intercept scaffold S and our ready policy P of the
same server:

1. P loads, without a warning.
2. Calls S refuses, P refuses: if S's default is deny, so is P's; every tool S denies
   outright (a deny rule without conditions), P refuses (hidden, unlisted under default
   deny, or denied without conditions).
3. Rate limits S sets, P matches or tightens: for a limit of N calls per W seconds on a
   tool (or on "*"), P refuses the tool, or holds a rate limit on it or on "*" of M calls
   per w seconds that lets through no more calls in any W seconds: M <= N when w >= W,
   M * ceil(W / w) <= N when w < W.
4. Arguments S restricts (a rule with conditions), P refuses the tool or also restricts
   its arguments (a rule with conditions or a deny with when).
5. Classification: for every tool S files under a category heading (Read, Write,
   Destructive, Financial, Execute; "Other" claims none) and our catalogue has, our
   category is at least as cautious (in that order).
6. Tools S lists that the version we pin does not have (S was generated from another
   release, or another server of the same name), P refuses: default deny.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from mcpwall.catalog.classify import CAUTION_ORDER, Category
from mcpwall.catalog.entries import find_server
from mcpwall.policy import check_policy, load_policy
from mcpwall.policy.model import Action, Policy, Rule
from tests.catalog.helpers import POLICIES
from tests.conftest import INTERCEPT, needs_intercept

# Intercept's scaffold -> our catalogue key, for the servers both cover. Intercept's
# github.yaml describes GitHub's Go server; ours, the npm reference server with the
# same serverInfo name: the tools both have are compared, the others fall under 6.
COVERED = {
    "filesystem.yaml": "server-filesystem",
    "memory.yaml": "server-memory",
    "git.yaml": "mcp-server-git",
    "github.yaml": "server-github",
    "slack.yaml": "server-slack",
    "postgres.yaml": "server-postgres",
    "brave-search.yaml": "server-brave-search",
    "playwright.yaml": "playwright-mcp",
}
_HEADING = re.compile(r"^\s*#\s*──\s*(\w+) Tools")
_TOOL = re.compile(r"^    ([A-Za-z0-9_.\-]+):\s*$")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def headings(text: str) -> dict[str, Category | None]:
    """Each tool's category by the section heading it sits under in the scaffold."""
    found: dict[str, Category | None] = {}
    current: Category | None = None
    for line in text.splitlines():
        if heading := _HEADING.match(line):
            word = heading.group(1)
            current = Category(word) if word in Category._value2member_map_ else None
        elif tool := _TOOL.match(line):
            found[tool.group(1)] = current
    return found


def limit(rule: dict[str, object]) -> tuple[int, float] | None:
    """An Intercept rate limit as (calls, seconds): "N/minute" or {max, window}."""
    value = rule.get("rate_limit")
    if isinstance(value, str):
        count, _, unit = value.partition("/")
        return int(count), _UNITS[unit.strip().rstrip("s")]
    if isinstance(value, dict):
        return int(value["max"]), float(value["window"])
    return None


def refuses(policy: Policy, tool: str) -> bool:
    plan = policy.plan(tool)
    return plan.refusal is not None or any(_flat_deny(r) for r in plan.rules)


def _flat_deny(rule: Rule) -> bool:
    return rule.action is Action.DENY and not rule.when


def limits_as_much(policy: Policy, tool: str, calls: int, seconds: float) -> bool:
    if refuses(policy, tool):
        return True
    for rule in policy.plan(tool).rules:
        counter = rule.counter
        if counter is None or not counter.is_rate_limit or counter.max_calls is None:
            continue
        ours, window = counter.max_calls, counter.window.seconds
        if window >= seconds and ours <= calls:
            return True
        if window < seconds and ours * math.ceil(seconds / window) <= calls:
            return True
    return False


def restricts_arguments(policy: Policy, tool: str) -> bool:
    return refuses(policy, tool) or any(r.require or r.when for r in policy.plan(tool).rules)


def scaffolds() -> list[str]:
    return sorted(COVERED) if INTERCEPT.is_dir() else []


@needs_intercept
@pytest.mark.parametrize("scaffold", scaffolds())
def test_our_policy_is_at_least_as_strict(scaffold: str) -> None:
    path: Path = INTERCEPT / "policies" / scaffold
    text = path.read_text()
    theirs = yaml.safe_load(text)
    key = COVERED[scaffold]
    ours_path = POLICIES / f"{key}.yaml"
    loaded, problems = check_policy(ours_path)
    assert loaded is not None and problems == [], problems  # 1
    ours = load_policy(ours_path)
    catalogue = find_server(key)
    if theirs.get("default") == "deny":  # 2
        assert refuses(ours, "a_tool_nobody_listed")
    tools = theirs.get("tools") or {}
    for tool, entry in tools.items():
        targets = list(catalogue.tools) if tool == "*" else [tool]
        for rule in (entry or {}).get("rules") or []:
            for target in targets:
                if rule.get("action") == "deny" and not rule.get("conditions"):
                    assert refuses(ours, target), f"{target}: Intercept denies it"  # 2
                if (limited := limit(rule)) is not None:
                    assert limits_as_much(ours, target, *limited), f"{target}: {limited}"  # 3
                if rule.get("conditions"):
                    assert restricts_arguments(ours, target), target  # 4
    for tool, category in headings(text).items():
        if tool not in catalogue.tools:
            assert refuses(ours, tool), f"{tool}: not in {key}, yet allowed"  # 6
        elif category is not None:  # 5
            mine = catalogue.tools[tool].category
            assert CAUTION_ORDER.index(mine) >= CAUTION_ORDER.index(category), (
                f"{tool}: Intercept says {category}, the catalogue {mine}"
            )


@needs_intercept
def test_the_comparison_covers_every_scaffold_of_a_server_we_catalogue() -> None:
    """A scaffold of one of our servers that COVERED forgets would go unchecked."""
    ours = {alias.lower() for key in COVERED.values() for alias in find_server(key).aliases}
    for path in sorted((INTERCEPT / "policies").glob("*.yaml")):
        if path.stem in ours or f"server-{path.stem}" in ours:
            assert path.name in COVERED, path.name


def test_the_checks_tell_a_looser_policy_from_a_stricter_one() -> None:
    """The measures above on the memory policy: 10 reads of the graph per 10 minutes is
    looser than 5 per minute would allow in 10 minutes only if it let more through."""
    memory = load_policy(POLICIES / "server-memory.yaml")
    assert limits_as_much(memory, "read_graph", 10, 600)
    assert not limits_as_much(memory, "read_graph", 5, 600)
    assert limits_as_much(memory, "read_graph", 120, 60)  # the "*" ceiling
    assert not refuses(memory, "read_graph") and refuses(memory, "git_clone")
    assert restricts_arguments(load_policy(POLICIES / "mcp-server-git.yaml"), "git_status")
    assert not restricts_arguments(memory, "read_graph")
    text = "    #  ── Write Tools ──\n    a:\n        rules: []\n    #  ── Other Tools ──\n    b:\n"
    assert headings(text) == {"a": Category.WRITE, "b": None}
    assert limit({"rate_limit": "60/minute"}) == (60, 60) and limit({}) is None
