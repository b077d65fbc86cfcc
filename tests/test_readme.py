"""The README's policies are real: every complete policy it shows loads without an
error, and every flag it names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mcpwall.policy import check_policy
from tests.conftest import MCPWALL

README = Path(__file__).resolve().parent.parent / "README.md"
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
