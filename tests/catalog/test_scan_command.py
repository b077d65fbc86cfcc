"""`mcpwall scan` against our own SDK server (paginated tools/list, tools of every kind,
over stdio and over Streamable HTTP), and the scan's mistakes as one sentence."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.catalog.helpers import (
    DRIFTED_SERVER,
    PAGED_SERVER,
    free_port,
    mcpwall,
    mcpwall_json,
    wait_for_port,
)
from tests.conftest import MCPWALL

EXPECTED = {
    "read_notes": ("Read", "Low"),
    "delete_everything": ("Destructive", "High"),
    "run_script": ("Execute", "Critical"),
    "create_payment": ("Financial", "High"),
    "fetch_url": ("Read", "Medium"),
    "export_users": ("Read", "High"),
    "yes": ("Write", "Medium"),
}


def test_scan_follows_pagination_and_classifies_every_tool() -> None:
    body = mcpwall_json("scan", "--format", "json", "--", *PAGED_SERVER)
    assert [t["name"] for t in body["tools"]] == list(EXPECTED)  # three pages
    assert {t["name"]: (t["category"], t["risk"]) for t in body["tools"]} == EXPECTED
    assert body["catalogue"] is None
    assert all(t["classified_by"] == "classifier" and t["reasons"] for t in body["tools"])
    flagged = {t["name"]: t["flags"] for t in body["tools"] if t["flags"]}
    assert set(flagged) == {"delete_everything", "export_users"}
    assert "readOnlyHint: true" in flagged["delete_everything"][0]


def test_a_server_that_drifted_from_its_catalogue_entry_is_flagged() -> None:
    body = mcpwall_json("scan", "--format", "json", "--", *DRIFTED_SERVER)
    assert body["catalogue"] == {"server": "kubernetes-mcp-server", "version": "v0.0.67"}
    tools = {t["name"]: t for t in body["tools"]}
    clone = tools["vm_clone"]
    assert (clone["category"], clone["risk"], clone["classified_by"]) == (
        "Write",
        "Medium",
        "catalogue",
    )
    assert clone["flags"][0] == "the server declares readOnlyHint true, the v0.0.67 catalogue false"
    evict = tools["pods_evict"]
    assert (evict["category"], evict["classified_by"]) == ("Destructive", "classifier")
    assert evict["flags"] == [
        "not in the kubernetes-mcp-server v0.0.67 catalogue: a newer tool, classified from "
        "what it declares"
    ]
    assert len(body["not_offered"]) == 51


def test_the_scaffold_validates_and_treats_each_category_as_documented(tmp_path: Path) -> None:
    scaffold = tmp_path / "policy.yaml"
    result = mcpwall("scan", "-o", str(scaffold), "--", *PAGED_SERVER)
    assert result.returncode == 0, result.stderr
    validated = mcpwall("validate", "-c", str(scaffold))
    assert validated.returncode == 0 and "warning" not in validated.stdout

    def decide(tool: str) -> str:
        return mcpwall("check", "-c", str(scaffold), "--state-dsn", "memory:", tool).stdout

    assert decide("read_notes") == "allowed: read_notes\n"
    assert decide("yes") == "allowed: yes\n"
    assert "hidden by policy" in decide("run_script")
    assert "create_payment is Financial (High risk); denied until reviewed" in decide(
        "create_payment"
    )
    assert "delete_everything is Destructive" in decide("delete_everything")
    text = scaffold.read_text()
    assert "# FLAGGED: the annotations (readOnlyHint: true) say Read" in text
    assert '\n  "yes":\n' in text


def test_the_spend_cap_the_scaffold_suggests_validates_once_uncommented(tmp_path: Path) -> None:
    text = mcpwall("scan", "--", *PAGED_SERVER).stdout
    lines = text.splitlines()
    start = lines.index("  #   create_payment:")
    example = []
    for line in lines[start:]:
        if not line.startswith("  #   "):
            break
        example.append("  " + line.removeprefix("  #   "))
    policy = tmp_path / "spend.yaml"
    policy.write_text('version: "1"\ntools:\n' + "\n".join(example) + "\n")
    assert mcpwall("validate", "-c", str(policy)).returncode == 0
    big = mcpwall(
        "check", "-c", str(policy), "--state-dsn", "memory:", "create_payment",
        "--args", '{"amount": 60000, "currency": "eur"}',
    )  # fmt: skip
    assert big.returncode == 1 and "cannot exceed $500.00" in big.stdout


@pytest.mark.parametrize(("suffix", "marker"), [(".md", "| `read_notes` |"), (".html", "<table>")])
def test_the_report_format_follows_the_output_suffix(
    tmp_path: Path, suffix: str, marker: str
) -> None:
    report = tmp_path / f"report{suffix}"
    assert mcpwall("scan", "-o", str(report), "--", *PAGED_SERVER).returncode == 0
    text = report.read_text()
    assert marker in text
    assert "Flagged: look at these first" in text


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [*PAGED_SERVER, "--http", str(port), "sesame"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_scan_over_http_sends_the_headers_it_is_given(http_server: str) -> None:
    body = mcpwall_json(
        "scan", "--format", "json", "--upstream", http_server, "--header", "X-Scan-Token: sesame"
    )
    assert [t["name"] for t in body["tools"]] == list(EXPECTED)
    refused = mcpwall("scan", "--upstream", http_server)
    assert refused.returncode == 2
    assert refused.stderr == f"mcpwall: error: {http_server} answered HTTP 401 Unauthorized\n"


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        ([], "no server to scan: put its command after --"),
        (["--upstream", "http://127.0.0.1:1/mcp", "--", "true"], "not both"),
        (["--header", "A: b", "--", "true"], "--header applies to --upstream only"),
        (["--upstream", "http://127.0.0.1:1/mcp", "--header", "nocolon"], "--header must look"),
        (["--timeout", "0", "--", "true"], "--timeout must be a positive number"),
        (["--", "/no/such/server"], "cannot start the MCP server /no/such/server"),
        (
            ["--", "sh", "-c", "echo 'kubeconfig not found' >&2; exit 3"],
            "the MCP server closed the connection before listing its tools "
            "(it said: kubeconfig not found)",
        ),
        (["--timeout", "1", "--", "sh", "-c", "echo not-json; cat >/dev/null"], "within 1 s"),
        (["--upstream", "http://127.0.0.1:1/mcp"], "cannot connect to http://127.0.0.1:1/mcp"),
        (["-o", "/no/such/dir/policy.yaml", "--", *PAGED_SERVER], "cannot write"),
    ],
)
def test_scan_mistakes_are_one_sentence(args: list[str], sentence: str) -> None:
    result = mcpwall("scan", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("mcpwall: error: ") and sentence in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_no_progress_without_a_terminal() -> None:
    result = mcpwall("scan", "--", *PAGED_SERVER)
    assert result.returncode == 0 and result.stderr == ""


def test_progress_shows_on_a_terminal(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [MCPWALL, "scan", "-o", str(tmp_path / "p.yaml"), "--", *PAGED_SERVER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the terminal closed: the scan is over
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
    finally:
        process.wait(timeout=10)
        os.close(primary)
    screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).decode("utf-8", "replace")
    assert process.returncode == 0
    assert "mcpwall scan: connecting to " in screen  # the spinner, while the server starts
    assert screen.rstrip().endswith(
        "mcpwall scan: wrote " + str(tmp_path / "p.yaml") + " (yaml): 7 tools, 2 flagged"
    )
