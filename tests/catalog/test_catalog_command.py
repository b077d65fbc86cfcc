"""`mcpwall catalog` as a user meets it: the servers, a server's tools, a tool's page in
every format, the snippets on every page, and mistakes answered in one sentence."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcpwall.policy import check_policy
from tests.catalog.helpers import PAGED_SERVER, mcpwall, mcpwall_json
from tests.conftest import MCPWALL

CATEGORIES = {"Read", "Write", "Execute", "Destructive", "Financial"}
RISKS = ["Low", "Medium", "High", "Critical"]


def test_the_catalogue_lists_its_servers() -> None:
    text = mcpwall("catalog")
    assert text.returncode == 0 and "kubernetes-mcp-server" in text.stdout
    body = mcpwall_json("catalog", "--format", "json")
    counts = {s["server"]: s["tools"] for s in body}
    assert len(counts) >= 13 and counts["kubernetes-mcp-server"] == 52
    for server in body:
        assert server["version"] and server["tools"] >= 1 and server["server"] in text.stdout
    kubernetes = next(s for s in body if s["server"] == "kubernetes-mcp-server")
    assert "kubernetes" in kubernetes["aliases"]


@pytest.mark.parametrize(
    "name",
    ["kubernetes", "kubernetes-mcp-server", "K8S", "io.github.containers/kubernetes-mcp-server"],
)
def test_a_server_is_found_by_its_name_or_an_alias(name: str) -> None:
    body = mcpwall_json("catalog", name, "--format", "json")
    assert body["server"] == "kubernetes-mcp-server"


def test_a_server_lists_every_tool_with_category_and_risk() -> None:
    body = mcpwall_json("catalog", "kubernetes", "--format", "json")
    tools = body["tools"]
    assert len(tools) == 52
    assert all(t["category"] in CATEGORIES and t["risk"] in RISKS for t in tools)
    text = mcpwall("catalog", "kubernetes").stdout
    for tool in tools:
        line = next(line for line in text.splitlines() if line.startswith(tool["name"] + " "))
        assert tool["category"] in line and tool["risk"] in line


def test_vm_clone_is_a_write_of_at_least_medium_risk_and_says_why_the_seed_is_wrong() -> None:
    page = mcpwall_json("catalog", "kubernetes", "vm_clone", "--format", "json")
    assert page["category"] == "Write"
    assert RISKS.index(page["risk"]) >= RISKS.index("Medium")
    assert "Read with Low risk" in page["note"] and "modify state" in page["note"]
    assert page["annotations"]["readOnlyHint"] is False
    assert [p["name"] for p in page["parameters"]] == ["namespace", "name", "targetName", "context"]
    # What the server's hints alone make of it, shown next to our verdict.
    assert page["automatic"]["category"] == "Destructive"

    text = mcpwall("catalog", "kubernetes", "vm_clone")
    assert text.returncode == 0
    assert re.search(r"^Category: +Write$", text.stdout, re.MULTILINE)
    assert re.search(r"^Risk: +Medium$", text.stdout, re.MULTILINE)
    for heading in ("What it does", "Why Write and Medium", "Watch out", "Allow it", "Deny it"):
        assert f"\n{heading}\n" in text.stdout
    assert "rate_limit: {max: " in text.stdout


def test_a_tool_page_in_markdown() -> None:
    result = mcpwall("catalog", "kubernetes", "resources_get", "--format", "markdown")
    assert result.returncode == 0
    page = result.stdout
    assert page.startswith("# resources_get: Read / High\n")
    assert "| `apiVersion` | string | yes |" in page
    assert page.count("```yaml") == 5  # suggested, allow, rate-limit, deny, hide
    assert "## Watch out" in page


def test_a_tool_page_in_html_is_one_self_contained_file() -> None:
    result = mcpwall("catalog", "kubernetes", "vm_clone", "--format", "html")
    assert result.returncode == 0
    page = result.stdout
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "<title>vm_clone: Write / Medium</title>" in page
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\(|@import", page)
    assert '<span class="badge write">Write</span>' in page
    assert "<pre><code>version: &quot;1&quot;" in page


def test_the_server_page_in_html_and_markdown() -> None:
    html = mcpwall("catalog", "kubernetes", "--format", "html").stdout
    assert html.count("<tr>") >= 52
    markdown = mcpwall("catalog", "kubernetes", "--format", "markdown").stdout
    assert len(re.findall(r"^\| `\w+` \|", markdown, re.MULTILINE)) == 52


def tool_pages() -> list[dict[str, Any]]:
    tools = mcpwall_json("catalog", "kubernetes", "--format", "json")["tools"]
    return [
        mcpwall_json("catalog", "kubernetes", tool["name"], "--format", "json") for tool in tools
    ]


def test_every_snippet_on_every_page_validates_as_written(tmp_path: Path) -> None:
    pages = tool_pages()
    assert len(pages) == 52
    for page in pages:
        titles = [s["title"] for s in page["snippets"]]
        assert {"What we suggest", "Allow it", "Rate-limit it", "Deny it"} <= set(titles)
        for snippet in page["snippets"]:
            path = tmp_path / f"{page['tool']}.yaml"
            path.write_text(snippet["policy"])
            policy, problems = check_policy(path)
            where = f"{page['tool']}: {snippet['title']}"
            assert policy is not None and problems == [], f"{where}: {problems}"
            assert page["tool"] in snippet["policy"], where


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["nope"], 'the catalogue has no server "nope" (mcpwall catalog lists them)'),
        (
            ["kubernetes", "vm_clon"],
            'the kubernetes-mcp-server catalogue has no tool "vm_clon"; did you mean '
            '"vm_clone"? (mcpwall catalog kubernetes lists them)',
        ),
    ],
)
def test_unknown_names_are_one_sentence(args: list[str], sentence: str) -> None:
    result = mcpwall("catalog", *args)
    assert result.returncode == 2
    assert result.stderr == f"mcpwall: error: {sentence}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["scan", "catalog"])
def test_the_new_commands_have_help_and_are_listed(command: str) -> None:
    result = mcpwall(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: mcpwall {command}")
    assert f"  {command} " in mcpwall("--help").stdout


@pytest.mark.parametrize(
    "args", [["catalog", "kubernetes", "--format", "html"], ["scan", "--", *PAGED_SERVER]]
)
def test_a_reader_that_stops_reading_is_no_error(args: list[str]) -> None:
    # The reader is gone before mcpwall writes a byte, as with `mcpwall ... | head -1`
    # when head has had its line.
    process = subprocess.Popen(
        [MCPWALL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (0, "")
