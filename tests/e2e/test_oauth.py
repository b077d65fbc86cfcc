"""mcpwall --transport http --auth as an OAuth resource server, against a real issuer
(tests/servers/issuer.py) serving its metadata and key set over HTTP, with keys the
tests make. Every token that does not do gets a clear 401/403 (or 503 when it cannot
be checked) and no call reaches the server (a bare HTTP server that records every
request it gets); the token itself never reaches it either. Then per-user limits,
exact across two listener processes sharing a real redis-server, and rules on claims.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import server_cmd
from tests.e2e.http import Listener, free_port, listener, serving
from tests.helpers import audit_events
from tests.servers.issuer import Issuer, SigningKey

ACCEPT = {"Accept": "application/json", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "oauth-test", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
ALLOW_ALL = 'version: "1"\ntools: {}\n'
TEAM = """
version: "1"
tools:
  echo:
    rules:
      - name: five per user
        rate_limit: {max: 5, window: 1h, scope: user}
  pods_delete:
    rules:
      - name: sre only
        conditions:
          - {path: claims.groups, op: contains, value: sre}
        on_deny: "only the sre group may delete pods"
"""


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    started = Issuer()
    yield started
    started.stop()


@pytest.fixture
def recorder(wire: Path) -> Iterator[str]:
    """The upstream: a bare HTTP MCP server that records every request it receives."""
    port = free_port()
    with serving(server_cmd("http_recorder.py", str(port)), port):
        yield f"http://127.0.0.1:{port}/mcp"


@contextmanager
def gateway(
    policy: Path, issuer: Issuer, upstream: str, *extra: str, auth: str = ""
) -> Iterator[tuple[Listener, str]]:
    """mcpwall --auth in front of ``upstream``; its URL is the tokens' audience."""
    port = free_port()
    audience = f"http://127.0.0.1:{port}/mcp"
    spec = f"issuer={issuer.url},audience={audience}{auth}"
    with listener(
        policy, "--port", str(port), "--auth", spec, *extra, "--upstream", upstream
    ) as wall:
        yield wall, audience


def bearer(token: str) -> dict[str, str]:
    return {**ACCEPT, "Authorization": f"Bearer {token}"}


def call(request_id: int, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {"name": tool, "arguments": args or {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def open_session(http: httpx.Client, url: str, token: str) -> str:
    opened = http.post(url, json=INITIALIZE, headers=bearer(token))
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    sent = http.post(url, json=INITIALIZED, headers={**bearer(token), "mcp-session-id": session})
    assert sent.status_code == 202
    return session


def tool_calls(wire: Path) -> list[dict[str, Any]]:
    """The tools/call requests that reached the upstream server, with their headers."""
    if not wire.exists():
        return []
    seen = []
    for line in wire.read_text().split("\n")[:-1]:  # whole lines only
        request = json.loads(line)
        body = json.loads(request["body"]) if request["body"] else {}
        if type(body) is dict and body.get("method") == "tools/call":
            seen.append({"headers": request["headers"], "name": body["params"]["name"]})
    return seen


def challenge(response: httpx.Response) -> str:
    header = response.headers.get("www-authenticate", "")
    assert header.startswith("Bearer "), (response.status_code, response.headers, response.text)
    return header


def test_every_token_that_does_not_do_is_refused_and_reaches_nothing(
    issuer: Issuer, recorder: str, wire: Path, write_policy: Callable[..., Path], home: Path
) -> None:
    policy = write_policy(ALLOW_ALL)
    with (
        gateway(policy, issuer, recorder, auth=",scopes=mcp:tools,skew=5") as (wall, audience),
        httpx.Client(timeout=15) as http,
    ):
        url = wall.url
        metadata = f"{url.removesuffix('/mcp')}/.well-known/oauth-protected-resource/mcp"

        # The Protected Resource Metadata document (RFC 9728), at both its places.
        for path in (metadata, metadata.removesuffix("/mcp")):
            document = http.get(path)
            assert document.status_code == 200, path
            assert document.json()["resource"] == audience
            assert document.json()["authorization_servers"] == [issuer.url]
            assert document.json()["scopes_supported"] == ["mcp:tools"]

        # No token: 401, and the challenge says where to learn how to get one.
        bare = http.post(url, json=INITIALIZE, headers=ACCEPT)
        assert bare.status_code == 401
        assert f'resource_metadata="{metadata}"' in challenge(bare)
        assert "error=" not in challenge(bare)

        alice = issuer.token("alice", audience=audience)
        session = open_session(http, url, alice)
        allowed = http.post(
            url,
            json=call(1, "echo", {"n": 1}),
            headers={**bearer(alice), "mcp-session-id": session},
        )
        assert allowed.status_code == 200 and "error" not in allowed.json(), allowed.text

        stranger = SigningKey()
        stranger.kid = issuer.keys[0].kid  # names the issuer's key, signed by another
        now = time.time()
        bad = {
            "expired": issuer.token(audience=audience, lifetime=-60),
            "not yet valid, beyond the skew": issuer.token(audience=audience, not_before=now + 60),
            "wrong audience": issuer.token(audience="http://elsewhere.example/mcp"),
            "wrong issuer": issuer.token(audience=audience, iss="http://127.0.0.1:1"),
            "wrong key": issuer.token(audience=audience, key=stranger),
            "alg none": issuer.unsigned(audience),
            "HS256 keyed with the public key": issuer.hmac_with_public_key(audience),
            "not a JWT": "not-a-jwt",
        }
        expected = {
            "expired": "expired",
            "not yet valid, beyond the skew": "not valid yet",
            "wrong audience": "audience",
            "wrong issuer": "not issued by",
            "wrong key": "signature",
            "alg none": "algorithm 'none'",
            "HS256 keyed with the public key": "algorithm 'HS256'",
            "not a JWT": "not a JWT",
        }
        for n, (case, token) in enumerate(bad.items(), start=2):
            refused = http.post(
                url,
                json=call(n, "echo", {"case": case}),
                headers={**bearer(token), "mcp-session-id": session},
            )
            assert refused.status_code == 401, (case, refused.text)
            header = challenge(refused)
            assert 'error="invalid_token"' in header, case
            assert expected[case] in refused.json()["error_description"], (case, refused.text)
            assert f'resource_metadata="{metadata}"' in header

        # A token of another scheme, and one without the scope the gateway requires.
        basic = http.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Basic eDp5"})
        assert basic.status_code == 401 and 'error="invalid_token"' in challenge(basic)
        unscoped = issuer.token(audience=audience, scope="profile")
        refused = http.post(
            url, json=call(20, "echo"), headers={**bearer(unscoped), "mcp-session-id": session}
        )
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in challenge(refused)
        assert 'scope="mcp:tools"' in challenge(refused)

        # Within the skew a token that starts a few seconds from now is good.
        soon = issuer.token("alice", audience=audience, not_before=now + 2)
        fine = http.post(
            url,
            json=call(21, "echo", {"n": 2}),
            headers={**bearer(soon), "mcp-session-id": session},
        )
        assert fine.status_code == 200 and "error" not in fine.json(), fine.text

        # A session belongs to the subject that opened it: bob's valid token cannot use it.
        bob = issuer.token("bob", audience=audience)
        taken = http.post(
            url, json=call(22, "echo"), headers={**bearer(bob), "mcp-session-id": session}
        )
        assert taken.status_code == 404

    seen = tool_calls(wire)
    assert [c["name"] for c in seen] == ["echo", "echo"]  # alice's two good calls only
    forwarded = [
        request["headers"] for request in map(json.loads, wire.read_text().split("\n")[:-1])
    ]
    assert forwarded and all("authorization" not in headers for headers in forwarded)


def test_rotated_keys_are_fetched_once_and_a_key_set_that_is_down_fails_closed(
    issuer: Issuer, recorder: str, wire: Path, write_policy: Callable[..., Path], home: Path
) -> None:
    policy = write_policy(ALLOW_ALL)
    with (
        gateway(policy, issuer, recorder) as (wall, audience),
        httpx.Client(timeout=15) as http,
    ):
        url = wall.url
        old = issuer.keys[0]
        session = open_session(http, url, issuer.token("alice", audience=audience))
        fetched = issuer.jwks_fetches
        assert fetched == 1

        # The issuer rotates: a token with the new key makes mcpwall fetch the set again,
        # at once; a token of the retired key is refused.
        issuer.rotate()
        rotated = issuer.token("alice", audience=audience)
        reply = http.post(
            url, json=call(1, "echo"), headers={**bearer(rotated), "mcp-session-id": session}
        )
        assert reply.status_code == 200 and "error" not in reply.json(), reply.text
        assert issuer.jwks_fetches == fetched + 1
        retired = issuer.token("alice", audience=audience, key=old)
        refused = http.post(
            url, json=call(2, "echo"), headers={**bearer(retired), "mcp-session-id": session}
        )
        assert refused.status_code == 401 and old.kid in refused.json()["error_description"]

        # Tokens naming made-up keys cannot make mcpwall hammer the issuer.
        for n in range(5):
            made_up = SigningKey()
            token = issuer.token("alice", audience=audience, key=made_up)
            refused = http.post(
                url, json=call(10 + n, "echo"), headers={**bearer(token), "mcp-session-id": session}
            )
            assert refused.status_code == 401
        assert issuer.jwks_fetches <= fetched + 2

    # A gateway that cannot have the key set refuses every token: 503, never a pass.
    issuer.stop()
    with gateway(policy, issuer, recorder) as (wall, audience), httpx.Client(timeout=15) as http:
        for _ in range(2):
            down = http.post(
                wall.url, json=INITIALIZE, headers=bearer(issuer.token(audience=audience))
            )
            assert down.status_code == 503, down.text
            assert "cannot be checked now" in down.json()["error_description"]
            assert "retry-after" in down.headers
    assert [c["name"] for c in tool_calls(wire)] == ["echo"]


@pytest.mark.anyio
async def test_limits_per_user_hold_exactly_across_two_gateways_sharing_redis(
    issuer: Issuer,
    recorder: str,
    wire: Path,
    redis_url: str,
    write_policy: Callable[..., Path],
    home: Path,
) -> None:
    """Five echo calls per user per hour: alice and bob each make 12, over two sessions
    on each of two mcpwall processes at once, and each gets exactly five. Only the sre
    group may call pods_delete. The audit log names the subject of every call."""
    policy = write_policy(TEAM)
    port = free_port()
    audience = f"http://127.0.0.1:{port}/mcp"  # one audience: the service's URL
    spec = f"issuer={issuer.url},audience={audience},resource={audience}"
    state = ("--state-dsn", redis_url)
    metrics = free_port()
    with (
        listener(
            policy,
            "--port",
            str(port),
            "--auth",
            spec,
            *state,
            "--upstream",
            recorder,
            "--metrics-port",
            str(metrics),
        ) as first,
        listener(policy, "--auth", spec, *state, "--upstream", recorder) as second,
    ):
        tokens = {
            "alice": issuer.token("alice", audience=audience, groups=["sre"]),
            "bob": issuer.token("bob", audience=audience, groups=["dev"]),
        }
        async with httpx.AsyncClient(timeout=15) as http:

            async def session(url: str, token: str) -> str:
                opened = await http.post(url, json=INITIALIZE, headers=bearer(token))
                assert opened.status_code == 200, opened.text
                key = opened.headers["mcp-session-id"]
                headers = {**bearer(token), "mcp-session-id": key}
                assert (await http.post(url, json=INITIALIZED, headers=headers)).status_code == 202
                return key

            async def calls(url: str, token: str, key: str, tool: str, count: int) -> list[bool]:
                headers = {**bearer(token), "mcp-session-id": key}
                replies = await asyncio.gather(
                    *(http.post(url, json=call(n, tool), headers=headers) for n in range(count))
                )
                outcomes = []
                for reply in replies:
                    assert reply.status_code == 200, reply.text
                    outcomes.append(not reply.json()["result"].get("isError", False))
                return outcomes

            plan = [(wall.url, user) for wall in (first, second) for user in tokens for _ in (1, 2)]
            keys = await asyncio.gather(*(session(url, tokens[user]) for url, user in plan))
            results = await asyncio.gather(
                *(
                    calls(url, tokens[user], key, "echo", 3)
                    for (url, user), key in zip(plan, keys, strict=True)
                )
            )
            allowed = {user: 0 for user in tokens}
            for (_, user), outcomes in zip(plan, results, strict=True):
                allowed[user] += sum(outcomes)
            assert allowed == {"alice": 5, "bob": 5}

            # The rule on claims: alice is in sre, bob is not.
            by_user = dict(zip([user for _, user in plan], keys, strict=False))
            alice = await calls(second.url, tokens["alice"], by_user["alice"], "pods_delete", 1)
            bob = await calls(second.url, tokens["bob"], by_user["bob"], "pods_delete", 1)
            assert (alice, bob) == ([True], [False])
            scraped = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text

    reached = [c["name"] for c in tool_calls(wire)]
    assert sorted(reached) == ["echo"] * 10 + ["pods_delete"]
    decisions = audit_events(home, "decision")
    assert len(decisions) == 26
    by_subject = {(d["subject"], d["tool"], d["decision"]) for d in decisions}
    assert ("bob", "pods_delete", "denied") in by_subject
    assert ("alice", "pods_delete", "allowed") in by_subject
    denied = [
        d
        for d in decisions
        if d["subject"] == "bob" and d["tool"] == "echo" and d["decision"] == "denied"
    ]
    assert len(denied) == 7 and all(d["rule"] == "five per user" for d in denied)
    counted = {user: 0.0 for user in tokens}
    for line in scraped.splitlines():
        if line.startswith("mcpwall_subject_calls_total{"):
            subject = line.split('subject="')[1].split('"')[0]
            counted[subject] += float(line.rsplit(" ", 1)[1])
    assert counted == {"alice": 6, "bob": 6}  # the first gateway's calls, by subject
