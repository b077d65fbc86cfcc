"""Starting the stdio proxy: the server is started once the command line and the policy
are known to be good, nothing outlives a start that fails, and the proxy loads only what
an allow-all session needs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import MCPWALL, server_cmd

ALLOW_ALL = """
version: "1"
default: allow
tools: {}
"""

TIMEOUT = 20


def _marking_server(marker: Path) -> list[str]:
    """A server that leaves its pid in ``marker`` and then waits to be ended."""
    return ["sh", "-c", f'echo $$ > "{marker}"; exec sleep 60']


def _mcpwall(*args: str) -> subprocess.CompletedProcess[str]:
    """mcpwall run to its end, with nothing on its stdin."""
    return subprocess.run(
        [MCPWALL, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead to everyone but its parent.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_invalid_policy_starts_no_server(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    marker = tmp_path / "server.pid"
    policy = write_policy('version: "1"\ndefault: allow\ntools: {x: {rules: [{action: maybe}]}}\n')
    run = _mcpwall("-c", str(policy), "--", *_marking_server(marker))
    assert run.returncode == 2
    assert "nothing was started" in run.stderr
    assert not marker.exists()


def test_a_bad_state_option_starts_no_server(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    marker = tmp_path / "server.pid"
    policy = str(write_policy(ALLOW_ALL))
    run = _mcpwall("-c", policy, "--state-dsn", "postgres://db/x", "--", *_marking_server(marker))
    assert run.returncode == 2, run.stderr
    assert not marker.exists()


def test_a_start_that_fails_after_the_server_started_leaves_no_server(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    marker = tmp_path / "server.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        policy = str(write_policy(ALLOW_ALL))
        run = _mcpwall("-c", policy, "--metrics-port", str(port), "--", *_marking_server(marker))
    assert run.returncode != 0
    assert "Address already in use" in run.stderr
    assert marker.exists(), "the server was started before the metrics listener"
    assert _gone_within(int(marker.read_text()), 5), "the server outlived mcpwall's failed start"


def test_a_server_that_cannot_be_started_is_named_with_status_127(
    write_policy: Callable[..., Path], home: Path
) -> None:
    run = _mcpwall("-c", str(write_policy(ALLOW_ALL)), "--", "/no/such/server", "--flag")
    assert run.returncode == 127
    assert "cannot start the MCP server '/no/such/server': No such file or directory" in run.stderr


def test_the_server_inherits_only_stdin_stdout_and_stderr(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    listing = tmp_path / "fds"
    server = ["sh", "-c", f'ls /proc/$$/fd > "{listing}"; exec cat']
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # a descriptor mcpwall's own parent leaks to it
    try:
        proxy = subprocess.Popen(
            [MCPWALL, "-c", str(write_policy(ALLOW_ALL)), "--", *server],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_end,),
        )
        deadline = time.monotonic() + TIMEOUT
        while not (listing.exists() and listing.read_text().endswith("\n")):
            assert time.monotonic() < deadline, "the server never started"
            time.sleep(0.02)
        proxy.communicate(timeout=TIMEOUT)
    finally:
        os.close(read_end)
        os.close(write_end)
    # 0-2, and the descriptor ls itself opened to list the directory.
    assert len(listing.read_text().split()) == 4, listing.read_text()


# What an allow-all stdio session must not load: the HTTP stack, OAuth, traces, Redis,
# metrics, the MCP SDK, the catalogue, SQLite (no counter), and what only some policies
# need (schema checks, document parsers, regular expressions, redaction).
NOT_LOADED = (
    "aiohttp",
    "uvicorn",
    "starlette",
    "httpx",
    "jwt",
    "opentelemetry",
    "redis",
    "prometheus_client",
    "mcp",
    "mcpwall.catalog",
    "mcpwall.proxy.http",
    "mcpwall.auth.tokens",
    "sqlite3",
    "jsonschema_rs",
    "mcpwall.engine.structured",
    "re2",
    "mcpwall.engine.redact",
    "difflib",
)

_DUMP_MODULES = """
import atexit, json, sys
from mcpwall.cli.main import main
dump = sys.argv.pop(1)
atexit.register(lambda: open(dump, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "mcpwall"
main()
"""


def test_an_allow_all_stdio_session_loads_only_what_it_serves_with(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    dump = tmp_path / "modules.json"
    server = server_cmd("raw_recorder.py")
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo"}},
    ]
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _DUMP_MODULES,
            str(dump),
            "-c",
            str(write_policy(ALLOW_ALL)),
            "--",
            *server,
        ],
        env={**os.environ, "MCPWALL_TEST_WIRE": str(tmp_path / "wire.jsonl")},
        input="".join(json.dumps(request) + "\n" for request in requests),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    assert [answer["id"] for answer in answers] == [1, 2], run.stderr
    loaded = json.loads(dump.read_text())
    assert "mcpwall.proxy.stdio" in loaded  # the dump is of a session that ran
    unwanted = [
        name
        for name in loaded
        for prefix in NOT_LOADED
        if name == prefix or name.startswith(prefix + ".")
    ]
    assert unwanted == []
