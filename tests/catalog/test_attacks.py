"""The attack database: every entry complete, every prevention policy accepted by the
real loader, every named test a real one, and the tools it applies to computed from the
catalogue, so that a new server is covered without listing its tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcpwall.catalog.attacks import Attack, attacks, attacks_for, find_attack
from mcpwall.catalog.classify import Category, Risk
from mcpwall.catalog.entries import CatalogTool, Parameter, find_server, servers
from mcpwall.policy import check_policy
from tests.catalog.helpers import ROOT, mcpwall, mcpwall_json

REQUIRED = {
    "tool-poisoning", "rug-pull", "confused-deputy", "token-passthrough",
    "exfiltration-through-results", "excessive-agency", "retry-loops", "cost-blowups",
    "batch-bypass", "go-case-folding", "manifest-spellings", "hidden-tools-called-anyway",
    "schema-breaking-arguments", "shell-in-exec", "secrets-in-results",
    "notification-flooding",
}  # fmt: skip


def test_the_database_covers_every_attack_class_with_a_complete_entry() -> None:
    found = attacks()
    assert len(found) >= 15
    assert {a.id for a in found} >= REQUIRED
    for attack in found:
        assert attack.title and attack.case.count(". ") >= 1, attack.id
        assert attack.test.startswith("tests/") and "::test_" in attack.test, attack.id
        assert attack.tools(), f"{attack.id} applies to no tool of the catalogue"


@pytest.mark.parametrize("attack", attacks(), ids=lambda a: a.id)
def test_each_prevention_policy_validates_as_written(attack: Attack, tmp_path: Path) -> None:
    path = tmp_path / f"{attack.id}.yaml"
    path.write_text(attack.prevention)
    policy, problems = check_policy(path)
    assert policy is not None and problems == [], problems


def test_each_named_test_exists() -> None:
    nodes = [a.test for a in attacks()]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *nodes],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    collected = result.stdout.splitlines()
    for node in nodes:
        assert any(line == node or line.startswith(node + "[") for line in collected), node


def test_every_tool_of_the_catalogue_meets_some_attacks() -> None:
    for server in servers():
        for tool in server.tools.values():
            assert attacks_for(tool), f"{server.name} {tool.name}"


def _attack_ids(tool: CatalogTool) -> set[str]:
    return {a.id for a, _ in attacks_for(tool)}


def test_what_applies_follows_the_tool_not_a_list() -> None:
    kubernetes = find_server("kubernetes")
    assert "secrets-in-results" in _attack_ids(kubernetes.tool("configuration_view"))
    assert "shell-in-exec" in _attack_ids(kubernetes.tool("pods_exec"))
    assert "manifest-spellings" in _attack_ids(kubernetes.tool("resources_create_or_update"))
    assert "excessive-agency" in _attack_ids(kubernetes.tool("pods_delete"))
    assert "excessive-agency" not in _attack_ids(kubernetes.tool("pods_list"))


def _tool(
    category: Category, risk: Risk, *parameters: Parameter, **annotations: bool
) -> CatalogTool:
    return CatalogTool(
        name="made_up", server="a-server-the-catalogue-does-not-have", toolset="all",
        does="Something.", parameters=parameters, annotations=annotations,
        category=category, risk=risk, why=(), dangers=(), note=None,
        rules="- action: allow\n", hide=False,
    )  # fmt: skip


def test_a_tool_of_a_new_server_is_covered_by_its_facts() -> None:
    url = Parameter("url", "string", True, "the page to fetch")
    fetch = _tool(Category.READ, Risk.MEDIUM, url, openWorldHint=True)
    assert {"exfiltration-through-results", "token-passthrough", "rug-pull"} <= _attack_ids(fetch)
    assert "excessive-agency" not in _attack_ids(fetch)

    amount = Parameter("amount", "integer", True, "in cents")
    pay = _tool(Category.FINANCIAL, Risk.HIGH, amount, openWorldHint=False)
    assert {"cost-blowups", "excessive-agency", "numbers-in-conditions"} <= _attack_ids(pay)
    assert "token-passthrough" not in _attack_ids(pay)

    query = Parameter("command", "string", True, "a shell command")
    run = _tool(Category.EXECUTE, Risk.CRITICAL, query)
    assert {"shell-in-exec", "hidden-tools-called-anyway"} <= _attack_ids(run)


def test_the_command_lists_the_attacks_and_shows_one() -> None:
    listing = mcpwall("catalog", "attacks")
    assert listing.returncode == 0
    assert all(a.id in listing.stdout for a in attacks())
    page = mcpwall("catalog", "attacks", "rug-pull")
    assert page.returncode == 0 and "pin: enforce" in page.stdout
    assert "tests/e2e/test_pins.py::test_enforce_holds_a_changed_tool_until_accepted" in page.stdout
    body = mcpwall_json("catalog", "attacks", "shell-in-exec", "--format", "json")
    assert body["prevention"]["policy"] == find_attack("shell-in-exec").prevention
    assert ("kubernetes-mcp-server", "pods_exec") in {
        (t["server"], t["tool"]) for t in body["tools"]
    }
    markdown = mcpwall("catalog", "attacks", "--format", "markdown").stdout
    assert markdown.startswith("# The MCP attack database\n")


def test_an_unknown_attack_is_one_sentence() -> None:
    result = mcpwall("catalog", "attacks", "rug-pul")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        'mcpwall: error: the attack database has no attack "rug-pul"; did you mean '
        '"rug-pull"? (mcpwall catalog attacks lists them)\n'
    )


def test_a_tool_page_names_the_attacks_that_apply() -> None:
    text = mcpwall("catalog", "kubernetes", "pods_exec").stdout
    assert "\nAttacks that apply\n" in text and "shell-in-exec" in text
    body = mcpwall_json("catalog", "kubernetes", "pods_exec", "--format", "json")
    assert {"shell-in-exec", "excessive-agency"} <= {a["id"] for a in body["attacks"]}
