"""The command line as a user meets it: exit statuses, output, one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import INTERCEPT, MCPWALL, needs_intercept, server_cmd


def mcpwall(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCPWALL, *args], capture_output=True, text=True, timeout=30, cwd=cwd)


@pytest.mark.parametrize(
    "command", [[], ["validate"], ["check"], ["status"], ["scan"], ["catalog"], ["demo"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = mcpwall(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: mcpwall")


@needs_intercept
def test_validate_lists_every_error_with_file_line_col_and_hint() -> None:
    path = INTERCEPT / "testdata" / "invalid_schema.yaml"
    result = mcpwall("validate", "-c", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    errors = [line for line in lines if not line.startswith("    hint: ")]
    assert len(errors) == 15
    assert errors[0] == f'{path}:1:10: version must be "1", got "2"'
    assert all(line.startswith(f"{path}:") for line in errors)
    assert sum(line.startswith("    hint: ") for line in lines) == 15
    assert "invalid: 15 error(s)" in result.stderr


def test_validate_json(write_policy: Callable[..., Path]) -> None:
    result = mcpwall(
        "validate", "-c", str(write_policy("tools:\n  t: {rulez: 1}\n")), "--format", "json"
    )
    body = json.loads(result.stdout)
    assert result.returncode == 1 and body["valid"] is False
    assert [p["severity"] for p in body["problems"]] == ["warning", "error"]
    assert body["problems"][1]["line"] == 2 and body["problems"][1]["hint"]


@needs_intercept
def test_validate_accepts_a_valid_policy() -> None:
    result = mcpwall("validate", "-c", str(INTERCEPT / "testdata" / "valid_policy.yaml"))
    assert result.returncode == 0
    assert "valid: 5 tool entries" in result.stdout


@needs_intercept
def test_check_says_allowed_or_denied_by_exit_status(
    write_policy: Callable[..., Path], home: Path
) -> None:
    policy = str(INTERCEPT / "testdata" / "valid_policy.yaml")
    allowed = mcpwall(
        "check", "-c", policy, "create_charge", "--args", '{"amount": 100, "currency": "usd"}'
    )
    assert (allowed.returncode, allowed.stdout) == (0, "allowed: create_charge\n")
    denied = mcpwall(
        "check", "-c", policy, "create_charge", "--args", '{"amount": 60000, "currency": "usd"}'
    )
    assert denied.returncode == 1
    assert "rule:   max single charge" in denied.stdout
    assert "reason: Single charge cannot exceed $500.00" in denied.stdout
    as_json = mcpwall("check", "-c", policy, "delete_customer", "--format", "json")
    assert json.loads(as_json.stdout)["rule"] == "block destructive action"


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["-c", "missing.yaml", "--", "true"], "cannot read the policy file"),
        (["-c", "p.yaml"], "no server: put its command after --"),
        (["--", "true"], "a policy is required"),
        (
            ["-c", "p.yaml", "--state-dir", "a", "--state-dsn", "memory:", "--", "true"],
            "cannot be used together",
        ),
        (["check", "-c", "p.yaml", "t", "--args", "[1]"], "--args must be a JSON object"),
        (["-c", "p.yaml", "--", "/no/such/server"], "cannot start the MCP server"),
        (["-c", "p.yaml", "--call-timeout", "0", "--", "true"], "seconds above zero: '0'"),
        (["-c", "p.yaml", "--call-timeout", "nan", "--", "true"], "seconds above zero: 'nan'"),
    ],
)
def test_user_errors_are_one_clear_sentence(
    write_policy: Callable[..., Path],
    tmp_path: Path,
    home: Path,
    args: list[str],
    sentence: str,
) -> None:
    write_policy('version: "1"\ntools: {}\n', name="p.yaml")
    result = mcpwall(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_policy_starts_nothing(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    marker = tmp_path / "started"
    policy = write_policy('version: "1"\ntools:\n  t:\n    rules:\n      - {action: nope}\n')
    result = mcpwall("-c", str(policy), "--", "touch", str(marker))
    assert result.returncode == 2
    assert (
        f"{policy}:5:18: tools.t.rules[0]: action must be" in result.stderr
        and "does not validate" in result.stderr
    )
    assert not marker.exists()


def test_server_start_failure_exit_status(write_policy: Callable[..., Path], home: Path) -> None:
    policy = write_policy('version: "1"\ntools: {}\n')
    result = mcpwall("-c", str(policy), "--", *server_cmd("does_not_exist.py"))
    assert result.returncode == 2  # python itself started, and failed: its status


def test_demo_runs_a_real_session_and_shows_what_reached_the_server(home: Path) -> None:
    result = subprocess.run(
        [MCPWALL, "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "11 calls: 6 allowed, 5 denied by mcpwall" in result.stdout
    assert "The server's own record shows 6 calls" in result.stdout
    assert "pods_exec is hidden" in result.stdout
