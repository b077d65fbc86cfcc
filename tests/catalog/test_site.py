"""`mcpwall catalog site DIR` as files: a page for every server, tool and attack, ready
policies that validate, nothing fetched from elsewhere. The browser test
(test_site_browser.py) reads the same site as a person would."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mcpwall.catalog.attacks import attacks
from mcpwall.catalog.entries import servers
from mcpwall.policy import check_policy
from tests.catalog.helpers import mcpwall


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("site")
    result = mcpwall("catalog", "site", str(directory))
    assert result.returncode == 0, result.stderr
    pages = sum(len(s.tools) + 1 for s in servers()) + len(attacks()) + 2
    assert result.stdout == f"wrote {pages} pages into {directory}; open {directory}/index.html\n"
    return directory


def test_every_server_tool_and_attack_has_a_page(site: Path) -> None:
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"index.html", "attacks/index.html"} <= pages
    tools = sum(len(s.tools) for s in servers())
    assert len([p for p in pages if "/tools/" in p]) == tools
    assert len([p for p in pages if p.startswith("attacks/")]) == len(attacks()) + 1
    assert len([p for p in pages if re.fullmatch(r"servers/[^/]+/index\.html", p)]) == len(
        servers()
    )


def test_each_ready_policy_validates_and_lists_every_tool(site: Path) -> None:
    files = sorted(site.glob("servers/*/*-policy.yaml"))
    assert len(files) == len(servers())
    for server in servers():
        file = next(f for f in files if f"({server.name} {server.version})" in f.read_text())
        policy, problems = check_policy(file)
        assert policy is not None and problems == [], f"{file}: {problems}"
        text = file.read_text()
        assert "default: deny" in text and "pin: enforce" in text
        for tool in server.tools:
            assert json.dumps(tool) in text, (server.name, tool)


def test_pages_need_nothing_from_elsewhere_and_fit_a_phone(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
        # Scripts and styles are the site's own files; only plain links leave it.
        for target in re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="([^"]+)"', text):
            assert not re.match(r"[a-z]+:|//", target), (page, target)
        assert "@import" not in text and "url(" not in text
    css = (site / "assets" / "site.css").read_text()
    assert "@media (max-width:" in css and "url(" not in css and "@import" not in css


def test_the_search_index_names_every_page(site: Path) -> None:
    script = (site / "assets" / "search-index.js").read_text()
    prefix = "window.mcpwallSearch = "
    assert script.startswith(prefix) and script.endswith(";\n")
    entries = json.loads(script[len(prefix) : -2])
    kinds = [e["kind"] for e in entries]
    assert kinds.count("server") == len(servers())
    assert kinds.count("tool") == sum(len(s.tools) for s in servers())
    assert kinds.count("attack") == len(attacks())
    assert all((site / e["url"]).is_file() for e in entries)


def test_a_tool_page_is_the_catalogue_page_with_links(site: Path) -> None:
    page = (site / "servers/kubernetes-mcp-server/tools/vm_clone.html").read_text()
    assert "<h1>vm_clone: Write / Medium</h1>" in page
    assert '<a href="../index.html">all 52 of its tools</a>' in page
    assert '<a href="../kubernetes-mcp-server-policy.yaml">the full policy for all 52</a>' in page
    assert '<a href="../../../attacks/rug-pull.html"><code>rug-pull</code></a>' in page
    assert "Other Write tools across the catalogue" in page


def test_a_file_in_the_way_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "site"
    blocker.write_text("")
    result = mcpwall("catalog", "site", str(blocker))
    assert result.returncode == 2
    assert result.stderr == f"mcpwall: error: {blocker} exists and is not a directory\n"


@pytest.mark.parametrize(
    ("manifest", "allowed"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: team-a}\n", True),
        # A Secret spelled so that no regex over the text sees the word.
        ('apiVersion: v1\nkind: "\\x53ecret"\nmetadata: {name: s, namespace: team-a}\n', False),
        ("apiVersion: v1\nkind: ! Secret\nmetadata: {name: s, namespace: team-a}\n", False),
        ("kind: ConfigMap\nmetadata: {name: s, namespace: team-a}\n---\nkind: secret\n", False),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: kube-system}\n", False),
    ],
    ids=["configmap", "escaped-secret", "tagged-secret", "second-document", "system-namespace"],
)
def test_the_downloadable_policy_reads_manifests_as_the_server_does(
    site: Path, manifest: str, allowed: bool
) -> None:
    """The site's ready policy is no weaker than the shipped one: it declares the
    manifest structured, so its rules judge the objects, however they are spelled."""
    policy = site / "servers/kubernetes-mcp-server/kubernetes-mcp-server-policy.yaml"
    assert "format: kubernetes-manifest" in policy.read_text().replace('"', "")
    result = mcpwall(
        "check", "-c", str(policy), "resources_create_or_update",
        "--args", json.dumps({"resource": manifest}), "--state-dsn", "memory:",
    )  # fmt: skip
    assert result.returncode == (0 if allowed else 1), result.stdout + result.stderr
