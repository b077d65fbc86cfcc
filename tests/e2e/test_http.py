"""mcpwall on both sides of HTTP: its Streamable HTTP listener in front of a command or a
remote server, and its stdio bridge to remote servers (Streamable HTTP, legacy
HTTP+SSE). Real servers: server-everything in its HTTP modes, our SDK servers, a bare
HTTP server of our own that records every request; real clients: the SDK's HTTP client,
httpx, the official conformance suite and the Inspector CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import Record, npm_path, server_cmd, server_everything
from tests.e2e.http import free_port, listener, serving
from tests.e2e.sdk import text, through_mcpwall
from tests.helpers import received_calls, release, wait_until

pytestmark = pytest.mark.anyio

SEED = """
version: "1"
hide: [configuration_view, get-env, secret_get]
tools:
  vm_clone:
    rules:
      - action: allow
      - rate_limit: {max: 3, window: 60}
  pods_delete:
    rules:
      - action: deny
        reason: "Pod deletion is not permitted via AI agents"
"""
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


def everything_http(mode: str, port: int) -> Any:
    node, script = server_everything()[:2]
    return serving([node, script, mode], port, {"PORT": str(port)})


# -- the official conformance suite ----------------------------------------------------


def conformance(url: str, out: Path) -> dict[tuple[str, str], str]:
    node = server_everything()[0]
    suite = npm_path("@modelcontextprotocol", "conformance", "dist", "index.js")
    subprocess.run(
        [node, str(suite), "server", "--url", url, "-o", str(out)],
        capture_output=True,
        timeout=180,
        check=False,
    )
    checks: dict[tuple[str, str], str] = {}
    for path in out.glob("*/checks.json"):
        scenario = re.sub(r"-\d{4}-\d\d-\d\dT.*$", "", path.parent.name)
        for check in json.loads(path.read_text()):
            checks[(scenario, check["id"])] = check["status"]
    return checks


def test_conformance_suite_passes_the_same_checks_through_mcpwall(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    allow_all = write_policy('version: "1"\ntools: {}\n')
    port = free_port()
    with everything_http("streamableHttp", port):
        direct = conformance(f"http://127.0.0.1:{port}/mcp", tmp_path / "direct")
        with listener(allow_all, "--upstream", f"http://127.0.0.1:{port}/mcp") as remote:
            via_remote = conformance(remote.url, tmp_path / "via-upstream")
    with listener(allow_all, "--", *server_everything()) as local:
        via_stdio = conformance(local.url, tmp_path / "via-stdio")
    passed = {check for check, status in direct.items() if status == "SUCCESS"}
    assert len(passed) >= 13
    for name, through in (("upstream", via_remote), ("stdio", via_stdio)):
        lost = {check for check in passed if through.get(check) != "SUCCESS"}
        assert not lost, f"through mcpwall ({name}) these checks no longer pass: {lost}"
        # mcpwall's own front refuses DNS rebinding, which server-everything does not.
        assert (
            through[("server-dns-rebinding-protection", "localhost-host-rebinding-rejected")]
            == "SUCCESS"
        )


def test_inspector_cli_lists_and_calls_tools_through_the_listener(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    inspector = npm_path(".bin", "mcp-inspector")
    node_dir = str(Path(server_everything()[0]).parent)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": node_dir + os.pathsep + os.environ["PATH"]}
    policy = write_policy(
        SEED + "  get-sum:\n    rules:\n      - {action: deny, reason: no sums}\n"
    )
    with listener(policy, "--", *server_everything()) as wall:

        def inspect(*args: str) -> str:
            done = subprocess.run(
                [str(inspector), "--cli", wall.url, "--transport", "http", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            return done.stdout + done.stderr

        listed = inspect("--method", "tools/list")
        assert '"echo"' in listed and '"get-env"' not in listed
        echoed = inspect(
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=through the wall",
        )
        assert "Echo: through the wall" in echoed
        denied = inspect(
            "--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=1", "b=2"
        )
        assert "[mcpwall] Denied by policy: no sums" in denied
        # A hidden tool is not even there to call.
        assert "not found" in inspect("--method", "tools/call", "--tool-name", "get-env")


# -- the SDK's HTTP client through the listener -----------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_denials_hidden_tools_and_session_limits_over_http(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    # Stateless (2026-07-28) clients have no session: the header tells them apart.
    with listener(
        write_policy(SEED), "--session-header", "X-Agent", "--", *server_cmd("k8s_like.py")
    ) as wall:
        async with (
            client_with_headers(wall.url, _agent("a"), mode=mode) as first,
            client_with_headers(wall.url, _agent("b"), mode=mode) as second,
        ):
            names = {tool.name for tool in (await first.list_tools()).tools}
            assert "pods_list" in names and "configuration_view" not in names
            denied = await first.call_tool("pods_delete", {"name": "web-1"})
            assert text(denied) == (
                "[mcpwall] Denied by policy: Pod deletion is not permitted via AI agents"
            )
            hidden = await first.call_tool("configuration_view", {})
            assert hidden.is_error and "hidden by policy" in text(hidden)
            clones = [
                (await first.call_tool("vm_clone", {"source": "a", "target": str(n)})).is_error
                for n in range(4)
            ]
            assert clones == [False, False, False, True]
            # Another client session is another agent session: its limit is its own.
            assert not (await second.call_tool("vm_clone", {"source": "a", "target": "x"})).is_error
    assert record.tools() == ["vm_clone"] * 4


def _agent(name: str) -> dict[str, str]:
    return {"X-Agent": name}


@asynccontextmanager
async def client_with_headers(
    url: str, headers: dict[str, str], **options: Any
) -> AsyncIterator[Client]:
    """The SDK's HTTP client, sending ``headers`` on every request."""
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, **options) as client:
            yield client


async def test_stateless_clients_are_told_apart_by_the_session_header(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    with listener(
        write_policy(SEED), "--session-header", "X-Agent", "--", *server_cmd("k8s_like.py")
    ) as wall:
        async with (
            client_with_headers(wall.url, _agent("a"), mode=MODERN) as a,
            client_with_headers(wall.url, _agent("b"), mode=MODERN) as b,
        ):
            results = []
            for client in (a, a, a, a, b):
                reply = await client.call_tool("vm_clone", {"source": "s", "target": "t"})
                results.append(reply.is_error)
            assert results == [False, False, False, True, False]


async def test_server_requests_reach_the_client_that_caused_them(
    home: Path, write_policy: Callable[..., Path]
) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def sampler(name: str) -> Any:
        async def sample(context: Any, params: types.CreateMessageRequestParams) -> Any:
            prompt = params.messages[0].content.text  # type: ignore[union-attr]
            seen[name].append(prompt)
            return types.CreateMessageResult(
                role="assistant",
                model="test",
                content=types.TextContent(type="text", text=f"{name} answers"),
            )

        return sample

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///workspace/a")])

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with listener(write_policy('version: "1"\ntools: {}\n'), "--", *server_everything()) as wall:
        async with (
            Client(
                wall.url,
                mode="legacy",
                sampling_callback=sampler("a"),
                list_roots_callback=roots,
                elicitation_callback=elicit,
            ) as a,
            Client(wall.url, mode="legacy", sampling_callback=sampler("b")) as b,
        ):
            async with anyio.create_task_group() as group:
                group.start_soon(
                    a.call_tool, "trigger-sampling-request", {"prompt": "for a", "maxTokens": 10}
                )
                group.start_soon(
                    b.call_tool, "trigger-sampling-request", {"prompt": "for b", "maxTokens": 10}
                )
            # Each sampling request went to the client whose call caused it.
            assert [prompt[-5:] for prompt in seen["a"]] == ["for a"]
            assert [prompt[-5:] for prompt in seen["b"]] == ["for b"]
            listed = await a.call_tool("get-roots-list", {})
            assert "file:///workspace/a" in text(listed)
            declined = await a.call_tool("trigger-elicitation-request", {})
            assert "decline" in text(declined).lower()
            done = await b.call_tool(
                "trigger-long-running-operation",
                {"duration": 0.3, "steps": 3},
                progress_callback=on_progress,
            )
            assert not done.is_error and progress == [1, 2, 3]


# -- raw HTTP: what the listener refuses ---------------------------------------------------


def _modern_call(name: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }


async def test_2026_headers_must_agree_with_the_body(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    with listener(write_policy(SEED), "--", *server_cmd("k8s_like.py")) as wall:
        async with httpx.AsyncClient(timeout=10) as http:
            base = {"Accept": ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"}
            forged = await http.post(
                wall.url,
                json=_modern_call("pods_delete"),
                headers={**base, "Mcp-Name": "pods_list"},
            )
            assert forged.status_code == 400
            assert forged.json()["error"]["code"] == -32020
            missing = await http.post(
                wall.url,
                json=_modern_call("pods_list"),
                headers={"Accept": ACCEPT, "MCP-Protocol-Version": MODERN},
            )
            assert missing.status_code == 400 and "mcp-method" in missing.text
            honest = await http.post(
                wall.url, json=_modern_call("pods_list"), headers={**base, "Mcp-Name": "pods_list"}
            )
            assert honest.status_code == 200 and '"isError":true' not in honest.text
    assert record.tools() == ["pods_list"]


async def test_origin_host_and_bearer_token(
    write_policy: Callable[..., Path], tmp_path: Path, home: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-one\ns3cret-two\n")
    ping = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    with listener(
        write_policy(SEED), "--auth-token-file", str(tokens), "--", *server_cmd("k8s_like.py")
    ) as wall:
        async with httpx.AsyncClient(timeout=10) as http:
            good = {"Accept": ACCEPT, "Authorization": "Bearer s3cret-two"}
            assert (
                await http.post(wall.url, json=ping, headers={"Accept": ACCEPT})
            ).status_code == 401
            assert (
                await http.post(
                    wall.url, json=ping, headers={**good, "Authorization": "Bearer wrong"}
                )
            ).status_code == 401
            assert (
                await http.post(
                    wall.url, json=ping, headers={**good, "Origin": "http://evil.example.com"}
                )
            ).status_code == 403
            assert (
                await http.post(wall.url, json=ping, headers={**good, "Host": "evil.example.com"})
            ).status_code == 421
            accepted = await http.post(
                wall.url, json=ping, headers={**good, "Origin": "http://localhost:1234"}
            )
            assert accepted.status_code == 200 and accepted.headers["mcp-session-id"]


# -- the upstream side -----------------------------------------------------------------------


@pytest.fixture
def wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "http-wire.jsonl"
    monkeypatch.setenv("MCPWALL_TEST_WIRE", str(path))
    return path


def requests_seen(wire: Path) -> list[dict[str, Any]]:
    if not wire.exists():
        return []
    # Whole lines only: the recorder may be writing the last one.
    return [json.loads(line) for line in wire.read_text().split("\n")[:-1]]


def calls_seen(wire: Path) -> list[str]:
    names = []
    for request in requests_seen(wire):
        if request["method"] == "POST" and request["body"]:
            body = json.loads(request["body"])
            if body.get("method") == "tools/call":
                names.append(body["params"]["name"])
    return names


async def test_client_credentials_never_go_upstream_unless_named(
    write_policy: Callable[..., Path], wire: Path, home: Path
) -> None:
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/mcp"
    with serving(server_cmd("http_recorder.py", str(port)), port):
        for extra in ([], ["--forward-header", "Authorization"]):
            with listener(
                write_policy(SEED), "--upstream", upstream, "--header", "X-Team: payments", *extra
            ) as wall:
                async with client_with_headers(
                    wall.url, {"Authorization": "Bearer agent-token"}, mode="legacy"
                ) as client:
                    assert "secret_get" not in {t.name for t in (await client.list_tools()).tools}
                    echoed = await client.call_tool("echo", {"n": 1})
                    assert json.loads(text(echoed)) == {"n": 1}
                    denied = await client.call_tool("pods_delete", {})
                    assert denied.is_error
            seen = [r["headers"] for r in requests_seen(wire) if r["method"] == "POST"]
            assert all(headers.get("x-team") == "payments" for headers in seen)
            forwarded = [headers.get("authorization") for headers in seen]
            assert set(forwarded) == ({"Bearer agent-token"} if extra else {None})
            wire.unlink()
    assert "pods_delete" not in calls_seen(wire)


async def test_stdio_bridge_to_streamable_http_resumes_a_cut_stream(
    write_policy: Callable[..., Path], wire: Path, home: Path
) -> None:
    port = free_port()
    with serving(server_cmd("http_recorder.py", str(port)), port):
        params = through_mcpwall(
            write_policy(SEED), [], "--upstream", f"http://127.0.0.1:{port}/mcp"
        )
        params.args.remove("--")
        async with Client(params, mode="legacy") as client:
            streamed = await client.call_tool("echo", {"stream": True})
            assert json.loads(text(streamed)) == {"stream": True}
            resumed = await client.call_tool("echo", {"drop": True})
            assert json.loads(text(resumed)) == {"drop": True}
            denied = await client.call_tool("pods_delete", {})
            assert denied.is_error
    gets = [r for r in requests_seen(wire) if r["method"] == "GET"]
    assert any(r["headers"].get("last-event-id") == "primed-1" for r in gets)
    assert all(
        r["headers"].get("mcp-session-id") == "recorder-session-1"
        for r in requests_seen(wire)[1:]
        if r["method"] in ("POST", "DELETE")
    )
    assert requests_seen(wire)[-1]["method"] == "DELETE"  # the session ended on exit
    assert calls_seen(wire) == ["echo", "echo"]


@pytest.mark.parametrize("mode", ["streamableHttp", "sse"])
async def test_stdio_bridge_to_server_everything_over_http(
    mode: str, write_policy: Callable[..., Path], home: Path
) -> None:
    port = free_port()
    path = "/mcp" if mode == "streamableHttp" else "/sse"
    with everything_http(mode, port):
        params = through_mcpwall(
            write_policy(SEED), [], "--upstream", f"http://127.0.0.1:{port}{path}"
        )
        params.args.remove("--")
        async with Client(params, mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "echo" in names and "get-env" not in names
            assert text(await client.call_tool("echo", {"message": "hi"})) == "Echo: hi"
            assert "hidden by policy" in text(await client.call_tool("get-env", {}))


async def test_upstream_dying_mid_call_fails_every_pending_call(
    write_policy: Callable[..., Path], wire: Path, home: Path
) -> None:
    port = free_port()
    with serving(server_cmd("http_recorder.py", str(port)), port):
        params = through_mcpwall(
            write_policy(SEED), [], "--upstream", f"http://127.0.0.1:{port}/mcp"
        )
        params.args.remove("--")
        async with Client(params, mode="legacy") as client:
            outcomes: list[str] = []

            async def call(name: str, arguments: dict[str, Any]) -> None:
                try:
                    result = await client.call_tool(name, arguments)
                    outcomes.append("error" if result.is_error else "ok")
                except Exception as exc:  # the SDK raises a JSON-RPC error
                    outcomes.append(str(exc))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as group:
                    group.start_soon(call, "slow", {"hold": True})
                    await wait_until(lambda: "slow" in calls_seen(wire))
                    group.start_soon(call, "die", {})
    assert len(outcomes) == 2
    assert all("[mcpwall]" in outcome for outcome in outcomes), outcomes


async def test_listener_answers_pending_calls_when_its_server_dies(
    write_policy: Callable[..., Path],
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCPWALL_TEST_WIRE", str(tmp_path / "wire.jsonl"))
    with listener(write_policy(SEED), "--", *server_cmd("raw_recorder.py")) as wall:
        async with httpx.AsyncClient(timeout=15) as http:
            init = await http.post(
                wall.url,
                headers={"Accept": "application/json"},
                json={
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
            )
            session = {
                "Mcp-Session-Id": init.headers["mcp-session-id"],
                "Accept": "application/json",
            }

            async def call(request_id: int, name: str) -> dict[str, Any]:
                reply = await http.post(
                    wall.url,
                    headers=session,
                    json={
                        "jsonrpc": "2.0",
                        "id": request_id,
                        "method": "tools/call",
                        "params": {"name": name, "arguments": {"hold": True}},
                    },
                )
                return dict(reply.json())

            slow = asyncio.ensure_future(call(1, "slow"))
            await wait_until(lambda: "slow" in received_calls(tmp_path / "wire.jsonl"))
            crash = await call(2, "crash")
            assert crash["error"]["code"] == -32000
            assert (await slow)["error"]["message"].startswith("[mcpwall] the MCP server")
            gone = await http.post(
                wall.url, headers=session, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}
            )
            assert gone.status_code == 404  # the session went with its server


async def test_cancellation_reaches_the_server_of_that_session(
    write_policy: Callable[..., Path],
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wire = tmp_path / "wire.jsonl"
    monkeypatch.setenv("MCPWALL_TEST_WIRE", str(wire))
    with listener(write_policy(SEED), "--", *server_cmd("raw_recorder.py")) as wall:
        async with httpx.AsyncClient(timeout=15) as http:
            init = await http.post(
                wall.url,
                headers={"Accept": "application/json"},
                json={
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
            )
            session = {
                "Mcp-Session-Id": init.headers["mcp-session-id"],
                "Accept": "application/json",
            }
            slow = asyncio.ensure_future(
                http.post(
                    wall.url,
                    headers=session,
                    json={
                        "jsonrpc": "2.0",
                        "id": 7,
                        "method": "tools/call",
                        "params": {"name": "slow", "arguments": {"hold": True}},
                    },
                )
            )
            await wait_until(lambda: "slow" in received_calls(wire))
            cancelled = await http.post(
                wall.url,
                headers=session,
                json={
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": 7, "reason": "the user stopped it"},
                },
            )
            assert cancelled.status_code == 202
            await wait_until(lambda: b"notifications/cancelled" in wire.read_bytes())
            release(wire)  # the server answers after all; the answer goes nowhere
            await slow
    lines = [json.loads(line) for line in wire.read_text().splitlines()]
    assert {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "the user stopped it"},
    } in lines
