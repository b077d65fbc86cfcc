"""The catalogue files of the real servers (tests/catalog/real_servers.py) as data: every
tool judged by hand (no draft left by the refresh), with reasons, dangers and rules that
validate; and every place where our category is more cautious than the server's own
annotations flagged with a note, so that a reader sees the conflict, not a silent
override."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcpwall.catalog.classify import CAUTION_ORDER, Category
from mcpwall.catalog.entries import CatalogTool, find_server, servers
from mcpwall.catalog.pages import snippets
from mcpwall.policy import check_policy
from tests.catalog.real_servers import REAL_SERVERS, RealServer

IDS = [s.key for s in REAL_SERVERS]


def test_the_catalogue_has_kubernetes_and_every_real_server() -> None:
    names = {s.name for s in servers()}
    assert len(names) >= 13 and "kubernetes-mcp-server" in names
    for server in REAL_SERVERS:
        assert find_server(server.key).package == server.pinned()


@pytest.mark.parametrize("server", REAL_SERVERS, ids=IDS)
def test_every_tool_is_judged_by_hand(server: RealServer) -> None:
    raw = yaml.safe_load(server.data_file.read_text())
    assert raw["project"].startswith("https://") and raw["about"] != "TODO"
    for name, tool in raw["tools"].items():
        assert not tool.get("draft"), f"{server.key}.{name}: a refresh draft, not reviewed"
        assert tool["why"] and tool["dangers"] and tool["rules"].strip(), name
        parameters = set(tool["declared"]["input"])
        assert set(tool.get("arguments") or ()) <= parameters, f"{name}: unknown argument"


def implied(tool: CatalogTool) -> Category | None:
    """The category the server's annotations claim on their own (None: no claim)."""
    hints = tool.annotations
    if hints.get("readOnlyHint") is True:
        return Category.READ
    if hints.get("destructiveHint") is True:
        return Category.DESTRUCTIVE
    if hints.get("readOnlyHint") is False:
        return Category.WRITE if hints.get("destructiveHint") is False else Category.DESTRUCTIVE
    return None


@pytest.mark.parametrize("server", REAL_SERVERS, ids=IDS)
def test_a_conflict_with_the_annotations_is_flagged(server: RealServer) -> None:
    """Wherever our category differs from what the annotations claim, or we rate a tool
    the server calls read-only above Medium, the entry carries a note that says why."""
    for tool in find_server(server.key).tools.values():
        claim = implied(tool)
        if claim is None:
            continue
        differs = CAUTION_ORDER.index(tool.category) != CAUTION_ORDER.index(claim)
        risky_read = claim is Category.READ and tool.risk.level >= 2
        if differs or risky_read:
            assert tool.note, (
                f"{server.key}.{tool.name}: {claim} by its hints, ours {tool.category} {tool.risk}"
            )


@pytest.mark.parametrize("server", REAL_SERVERS, ids=IDS)
def test_every_snippet_of_every_tool_validates(server: RealServer, tmp_path: Path) -> None:
    for tool in find_server(server.key).tools.values():
        for snippet in snippets(tool):
            path = tmp_path / "snippet.yaml"
            path.write_text(snippet.policy)
            policy, problems = check_policy(path)
            assert policy is not None and problems == [], (
                f"{tool.name}: {snippet.title}: {problems}"
            )
