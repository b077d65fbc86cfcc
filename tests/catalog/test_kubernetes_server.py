"""`mcpwall scan` through the real kubernetes-mcp-server binary, every toolset enabled.

The catalogue must describe exactly what the binary lists: the same tools, the same
annotations, the same parameters. A server release that changes any of them fails
here until the catalogue is brought up to date.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcpwall.catalog.entries import find_server
from tests.catalog.helpers import (
    ALL_TOOLSETS,
    free_port,
    kubernetes_command,
    mcpwall,
    mcpwall_json,
    wait_for_port,
)

CATALOGUE = find_server("kubernetes-mcp-server")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    command = kubernetes_command(tmp_path_factory.mktemp("k8s"), "--toolsets", ALL_TOOLSETS)
    return mcpwall_json("scan", "--format", "json", "--", *command)


def test_the_binary_is_the_version_the_catalogue_describes(scanned: dict[str, Any]) -> None:
    assert scanned["server"]["name"] == "kubernetes-mcp-server"
    assert scanned["server"]["version"] == CATALOGUE.version
    assert scanned["catalogue"] == {"server": CATALOGUE.name, "version": CATALOGUE.version}


def test_scan_lists_exactly_the_catalogued_tools(scanned: dict[str, Any]) -> None:
    listed = [tool["name"] for tool in scanned["tools"]]
    assert len(listed) == len(set(listed)) == 52
    assert set(listed) == set(CATALOGUE.tools)
    assert scanned["not_offered"] == []


def test_every_tool_declares_the_annotations_the_catalogue_cites(scanned: dict[str, Any]) -> None:
    for tool in scanned["tools"]:
        entry = CATALOGUE.tools[tool["name"]]
        assert tool["declared"]["annotations"] == dict(entry.annotations), tool["name"]
        assert tool["classified_by"] == "catalogue"
        assert not any("the server declares" in flag for flag in tool["flags"])


def test_every_tool_takes_the_parameters_the_catalogue_cites(scanned: dict[str, Any]) -> None:
    for tool in scanned["tools"]:
        schema = tool["declared"]["inputSchema"]
        required = set(schema.get("required", []))
        declared = {
            name: (spec.get("type"), name in required)
            for name, spec in schema.get("properties", {}).items()
        }
        catalogued = {
            p.name: (p.type, p.required) for p in CATALOGUE.tools[tool["name"]].parameters
        }
        assert declared == catalogued, tool["name"]


def test_scan_reports_the_catalogue_verdicts(scanned: dict[str, Any]) -> None:
    verdicts = {tool["name"]: (tool["category"], tool["risk"]) for tool in scanned["tools"]}
    assert verdicts["vm_clone"] == ("Write", "Medium")
    assert verdicts["configuration_view"] == ("Read", "Critical")
    assert verdicts["pods_exec"] == ("Execute", "Critical")
    vm_clone = next(t for t in scanned["tools"] if t["name"] == "vm_clone")
    assert vm_clone["automatic"]["category"] == "Destructive"  # what the hints alone say
    assert any("Read with Low risk" in flag for flag in vm_clone["flags"])


def test_the_scaffold_validates_as_written_and_decides_by_category(tmp_path: Path) -> None:
    scaffold = tmp_path / "scaffold.yaml"
    command = kubernetes_command(tmp_path, "--toolsets", ALL_TOOLSETS)
    result = mcpwall("scan", "-o", str(scaffold), "--", *command)
    assert result.returncode == 0, result.stderr
    noted = sum(1 for tool in CATALOGUE.tools.values() if tool.note)
    assert result.stderr == f"mcpwall scan: wrote {scaffold} (yaml): 52 tools, {noted} flagged\n"

    validated = mcpwall("validate", "-c", str(scaffold))
    assert validated.returncode == 0
    [line] = validated.stdout.splitlines()  # no warnings
    hidden = sum(
        1 for t in CATALOGUE.tools.values() if t.category == "Execute" or t.risk == "Critical"
    )
    assert f"{52 - hidden + 1} tool entries" in line and f"{hidden} hide entries" in line

    def decide(tool: str) -> tuple[int, str]:
        checked = mcpwall("check", "-c", str(scaffold), "--state-dsn", "memory:", tool)
        return checked.returncode, checked.stdout

    assert decide("namespaces_list") == (0, "allowed: namespaces_list\n")
    assert decide("vm_clone") == (0, "allowed: vm_clone\n")
    assert decide("pods_delete")[0] == 1 and "Destructive" in decide("pods_delete")[1]
    assert "hidden by policy" in decide("pods_exec")[1]
    assert "hidden by policy" in decide("configuration_view")[1]
    assert "default: deny" in decide("a_tool_of_a_later_release")[1]


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_reports_have_a_row_per_tool(tmp_path: Path, fmt: str) -> None:
    report = tmp_path / f"report.{'md' if fmt == 'markdown' else fmt}"
    command = kubernetes_command(tmp_path, "--toolsets", ALL_TOOLSETS)
    result = mcpwall("scan", "-o", str(report), "--", *command)
    assert result.returncode == 0, result.stderr
    assert f"({fmt})" in result.stderr
    text = report.read_text()
    for name in CATALOGUE.tools:
        row = (
            rf"^\| `{name}` \| \w+ \| \w+ \|"
            if fmt == "markdown"
            else rf"<tr><td><code>{name}</code></td><td><span class=\"badge"
        )
        assert re.search(row, text, re.MULTILINE), name


def test_default_toolsets_offer_21_tools_and_the_report_says_which_are_missing(
    tmp_path: Path,
) -> None:
    body = mcpwall_json("scan", "--format", "json", "--", *kubernetes_command(tmp_path))
    assert len(body["tools"]) == 21
    assert len(body["not_offered"]) == 31 and "vm_clone" in body["not_offered"]


def test_scan_over_streamable_http(tmp_path: Path) -> None:
    port = free_port()
    command = kubernetes_command(
        tmp_path, "--toolsets", ALL_TOOLSETS, "--port", str(port), "--bind-address", "127.0.0.1"
    )
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        body = mcpwall_json(
            "scan",
            "--format",
            "json",
            "--upstream",
            f"http://127.0.0.1:{port}/mcp",
            "--header",
            "X-Request-Source: mcpwall-test",
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert {tool["name"] for tool in body["tools"]} == set(CATALOGUE.tools)
    assert body["server"]["target"] == f"http://127.0.0.1:{port}/mcp"


def test_the_servers_own_switches_leave_what_the_catalogue_says(tmp_path: Path) -> None:
    def listed(*flags: str) -> set[str]:
        command = kubernetes_command(tmp_path, "--toolsets", ALL_TOOLSETS, *flags)
        return {
            t["name"] for t in mcpwall_json("scan", "--format", "json", "--", *command)["tools"]
        }

    read_only = listed("--read-only")
    assert {"configuration_view", "resources_get", "resources_list"} <= read_only
    assert "vm_clone" not in read_only
    kept = listed("--disable-destructive")
    assert {"pods_run", "helm_install", "tekton_pipeline_start", "tekton_task_start"} <= kept
    assert "tekton_taskrun_restart" in kept and "vm_clone" not in kept
