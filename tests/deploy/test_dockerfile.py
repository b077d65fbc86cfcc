"""The Dockerfile, read statically, and its default command run on this machine: no
Docker daemon here, so the image itself is built only where ``docker info`` works."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.gateway import assert_serves_the_demo, free_port, localise, running

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        found.append((word.upper(), rest.strip()))
        pending = ""
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def exec_form(word: str) -> list[str]:
    (value,) = [rest for each, rest in final_stage() if each == word]
    parsed = json.loads(value)  # the exec form: no shell between Docker and mcpwall
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def test_the_base_image_is_pinned_to_a_patch_version() -> None:
    steps = instructions()
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    stages = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for image in stages:
        resolved = args.get(image[2:-1], image) if image.startswith("${") else image
        assert BASE.match(resolved), f"{resolved} is not python:3.11.<patch>-slim-bookworm"


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) == 10001  # numeric: runAsNonRoot can verify it
    assert not group or (group.isdigit() and int(group) != 0)
    runs = " ".join(rest for word, rest in final_stage() if word == "RUN")
    assert "--uid 10001" in runs


def test_the_entrypoint_is_mcpwall_and_the_state_has_a_volume() -> None:
    assert exec_form("ENTRYPOINT") == ["mcpwall"]
    stage = final_stage()
    env = " ".join(rest for word, rest in stage if word == "ENV")
    assert "HOME=/var/lib/mcpwall" in env and "TMPDIR=/tmp" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # a read-only root takes no .pyc files
    volumes = [json.loads(rest) for word, rest in stage if word == "VOLUME"]
    assert ["/var/lib/mcpwall"] in volumes
    cmd = exec_form("CMD")
    # What the default command writes goes to the volume.
    assert cmd[cmd.index("--state-dir") + 1] == "/var/lib/mcpwall"
    assert cmd[cmd.index("--events-dir") + 1].startswith("/var/lib/mcpwall/")


def test_the_dockerignore_lets_in_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for word, rest in instructions()
        if word == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert all(any(c == a or c.startswith(a + "/") for a in allowed) for c in copied), (
        copied - allowed
    )


def test_the_default_command_runs_the_demo_gateway(tmp_path: Path, home: Path) -> None:
    """The CMD's arguments, with the image's paths mapped here: the real CLI accepts
    them, the gateway answers on the loopback names and judges by the demo policy."""
    copies = {
        rest.split()[-1]: ROOT / rest.split()[0]
        for word, rest in final_stage()
        if word == "COPY" and not rest.startswith("--from")
    }
    policy_dir = tmp_path / "etc-policy"
    policy_dir.mkdir()
    shutil.copy(copies["/etc/mcpwall/policy/policy.yaml"], policy_dir / "policy.yaml")
    port = free_port()
    cmd = exec_form("CMD")
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8000"
    args = localise(
        cmd, {"/etc/mcpwall/policy": policy_dir, "/var/lib/mcpwall": tmp_path / "state"}, port
    )
    with running(args, home):
        assert_serves_the_demo(port, "localhost:8000", "rebound.example:8000")
    # What it wrote (the audit log) is in the volume.
    assert list((tmp_path / "state" / "events").glob("*.jsonl"))


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(not _docker_works(), reason="no Docker daemon (docker info fails)")
def test_the_image_builds_and_runs_as_10001() -> None:  # pragma: no cover - needs a daemon
    tag = "mcpwall:deploy-test"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "id", tag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.startswith("uid=10001"), run.stdout + run.stderr
    version = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", tag, "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0 and "mcpwall" in version.stdout, version.stderr
