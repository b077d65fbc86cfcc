"""The ready policies of the real servers (policies/<server>.yaml): each validates
without a warning, is default-deny, lists exactly the catalogue's tools with the rules
the catalogue suggests (hiding the ones it says to hide), and decides the cases that
motivated its rules the way its comments say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpwall.catalog.entries import find_server
from mcpwall.policy import check_policy, load_policy
from tests.catalog.helpers import POLICIES, mcpwall
from tests.catalog.real_servers import REAL_SERVERS, RealServer

IDS = [s.key for s in REAL_SERVERS]


def policy_file(server: RealServer) -> Path:
    return POLICIES / f"{server.key}.yaml"


@pytest.mark.parametrize("server", REAL_SERVERS, ids=IDS)
def test_the_policy_validates_without_a_warning(server: RealServer) -> None:
    policy, problems = check_policy(policy_file(server))
    assert policy is not None and problems == []


@pytest.mark.parametrize("server", REAL_SERVERS, ids=IDS)
def test_the_policy_is_the_catalogues_advice(server: RealServer) -> None:
    """Default deny; every tool either hidden (where the catalogue says hide) or listed
    with exactly the catalogue's suggested rules; no tool the server does not have."""
    catalogue = find_server(server.key)
    raw = yaml.safe_load(policy_file(server).read_text())
    assert raw["default"] == "deny"
    hidden = set(raw.get("hide") or ())
    assert hidden == {t.name for t in catalogue.tools.values() if t.hide}
    listed = set(raw["tools"]) - {"*"}
    assert listed | hidden == set(catalogue.tools) and not listed & hidden
    for name in listed:
        suggested = yaml.safe_load(catalogue.tools[name].rules)
        assert raw["tools"][name]["rules"] == suggested, name
    policy = load_policy(policy_file(server))
    assert policy.plan("a_tool_of_a_later_release").refusal is not None


ALLOWED = (True, None)


def denied(rule: str) -> tuple[bool, str]:
    return (False, rule)


DECISIONS: list[tuple[str, str, dict[str, Any], tuple[bool, str | None]]] = [
    # filesystem: secrets refused to every read, .git and dotfiles to every write
    ("server-filesystem", "read_text_file", {"path": "/work/project/src/app.py"}, ALLOWED),
    (
        "server-filesystem",
        "read_text_file",
        {"path": "/work/project/.env"},
        denied("read_text_file[0] deny"),
    ),
    (
        "server-filesystem",
        "read_media_file",
        {"path": "/home/u/.ssh/id_ed25519"},
        denied("read_media_file[0] deny"),
    ),
    (
        "server-filesystem",
        "write_file",
        {"path": "/work/project/.git/hooks/pre-commit", "content": "x"},
        denied("write_file[0] deny"),
    ),
    (
        "server-filesystem",
        "write_file",
        {"path": "/work/project/notes.md", "content": "x"},
        ALLOWED,
    ),
    (
        "server-filesystem",
        "move_file",
        {"source": "/work/project/.git", "destination": "/tmp/g"},
        denied("move_file[0] deny"),
    ),
    # git: one repository; no secrets out of history
    ("mcp-server-git", "git_status", {"repo_path": "/work/project"}, ALLOWED),
    ("mcp-server-git", "git_status", {"repo_path": "/home/u/other"}, denied("the project only")),
    (
        "mcp-server-git",
        "git_show",
        {"repo_path": "/work/project", "revision": "HEAD~40:config/.env"},
        denied("git_show[1] deny"),
    ),
    ("mcp-server-git", "git_show", {"repo_path": "/work/project", "revision": "HEAD"}, ALLOWED),
    # fetch and navigation: public https only
    ("mcp-server-fetch", "fetch", {"url": "https://example.org/"}, ALLOWED),
    (
        "mcp-server-fetch",
        "fetch",
        {"url": "http://169.254.169.254/latest/meta-data/"},
        denied("public https only"),
    ),
    ("mcp-server-fetch", "fetch", {"url": "https://169.254.169.254/"}, denied("fetch[1] deny")),
    ("mcp-server-fetch", "fetch", {"url": "https://localhost:8080/admin"}, denied("fetch[1] deny")),
    (
        "playwright-mcp",
        "browser_navigate",
        {"url": "https://10.0.0.5/"},
        denied("browser_navigate[1] deny"),
    ),
    ("playwright-mcp", "browser_navigate", {"url": "https://example.org/"}, ALLOWED),
    (
        "playwright-mcp",
        "browser_tabs",
        {"action": "new", "url": "http://10.0.0.5/"},
        denied("browser_tabs[0] deny"),
    ),
    (
        "playwright-mcp",
        "browser_snapshot",
        {"filename": "/home/u/.bashrc"},
        denied("browser_snapshot[0] deny"),
    ),
    ("playwright-mcp", "browser_run_code_unsafe", {"code": "async () => 1"}, denied("(hidden)")),
    # postgres: one SELECT-like statement, no way out of the read-only transaction
    ("server-postgres", "query", {"sql": "SELECT id, name FROM users LIMIT 10"}, ALLOWED),
    ("server-postgres", "query", {"sql": "COMMIT; DROP TABLE users"}, denied("query[0] deny")),
    (
        "server-postgres",
        "query",
        {"sql": "select pg_read_file('/etc/passwd')"},
        denied("query[1] deny"),
    ),
    (
        "server-postgres",
        "query",
        {"sql": "DELETE FROM users"},
        denied("SELECT, WITH or EXPLAIN only"),
    ),
    # github: one owner, no approvals by the agent, no commits to the default branch
    (
        "server-github",
        "create_pull_request_review",
        {"owner": "your-org", "repo": "r", "pull_number": 1, "body": "ok", "event": "APPROVE"},
        denied("create_pull_request_review[1] deny"),
    ),
    (
        "server-github",
        "create_or_update_file",
        {
            "owner": "your-org",
            "repo": "r",
            "path": "a.md",
            "content": "x",
            "message": "m",
            "branch": "main",
        },
        denied("create_or_update_file[1] deny"),
    ),
    (
        "server-github",
        "get_file_contents",
        {"owner": "someone-else", "repo": "r", "path": "README.md"},
        denied("own repositories only"),
    ),
    ("server-github", "create_repository", {"name": "dump"}, denied("private only")),
    # slack: listed channels only
    ("server-slack", "slack_post_message", {"channel_id": "C0123456789", "text": "hi"}, ALLOWED),
    (
        "server-slack",
        "slack_post_message",
        {"channel_id": "CPUBLIC99", "text": "hi"},
        denied("allowed channels"),
    ),
    # everything: the environment is hidden
    ("server-everything", "get-env", {}, denied("(hidden)")),
    ("server-everything", "echo", {"message": "hi"}, ALLOWED),
]


@pytest.mark.parametrize(
    ("server", "tool", "args", "expected"),
    DECISIONS,
    ids=[f"{s}-{t}-{i}" for i, (s, t, _, _) in enumerate(DECISIONS)],
)
def test_decisions(server: str, tool: str, args: dict[str, Any], expected: Any) -> None:
    result = mcpwall(
        "check", "-c", str(POLICIES / f"{server}.yaml"), tool, "--args", json.dumps(args),
        "--format", "json", "--state-dsn", "memory:",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    body = json.loads(result.stdout)
    allowed, rule = expected
    assert body["allowed"] is allowed, body
    if rule is not None:
        assert body["rule"] == rule, body
