"""The README's policies are real: every complete policy it shows loads without an
error, and every flag it names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mcpwall.policy import check_policy
from tests.conftest import MCPWALL

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
POLICIES = [block for block in BLOCKS if re.search(r"^version:", block, re.M)]


def test_the_readme_shows_policies() -> None:
    assert len(POLICIES) >= 5


@pytest.mark.parametrize("text", POLICIES, ids=[f"policy{n}" for n in range(len(POLICIES))])
def test_each_readme_policy_validates(text: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy, errors = check_policy(str(path))
    assert errors == [] and policy is not None


def test_every_proxy_flag_the_readme_names_exists() -> None:
    section = README.read_text().split("Proxy flags:", 1)[1].split("\n\n", 1)[0]
    flags = set(re.findall(r"`(--[a-z-]+)", section))
    assert len(flags) > 20
    usage = subprocess.run([MCPWALL, "--help"], capture_output=True, text=True, check=False)
    missing = [flag for flag in flags if flag not in usage.stdout]
    assert missing == []


def test_every_test_security_md_names_exists() -> None:
    """SECURITY.md proves each defence by naming a test: a test renamed or moved must
    not leave it pointing at nothing. ``::name`` means a test of the file named last."""
    text = (ROOT / "SECURITY.md").read_text()
    missing = []
    for line in text.splitlines():
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", line):
            if path:
                current = path
            if name:
                assert current is not None, line
                source = (ROOT / current).read_text()
                if not re.search(rf"def {name}\(", source):
                    missing.append(f"{current}::{name}")
            elif path and not (ROOT / path).exists():
                missing.append(path)
    assert missing == []
