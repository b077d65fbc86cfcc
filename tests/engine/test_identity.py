"""Who calls, as the policy reads it: ``claims.*`` conditions and ``scope: user``
counters, with a token's Identity and without one (stdio, HTTP without --auth), where
every such rule fails closed. Also the --auth option's own checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcpwall.auth import Identity
from mcpwall.auth.options import parse_auth
from mcpwall.engine.decide import Call, Verdict
from mcpwall.engine.gate import Gate
from mcpwall.policy import Policy, check_policy, load_policy
from mcpwall.state.memory import MemoryStore

POLICY = """
version: "1"
tools:
  pods_delete:
    rules:
      - name: sre only
        conditions:
          - {path: claims.groups, op: contains, value: sre}
  echo:
    rules:
      - name: two per user
        rate_limit: {max: 2, window: 1h, scope: user}
  mail:
    rules:
      - name: one per address
        rate_limit: {max: 1, window: 1h, scope: user, user_key: claims.email}
  tiers:
    rules:
      - action: deny
        reason: "not on the free tier"
        when:
          - {path: "claims.https://example.com/tier", op: eq, value: free}
"""


def user(subject: str, **claims: Any) -> Identity:
    return Identity(subject, {"sub": subject, **claims}, frozenset())


@pytest.fixture
def policy(write_policy: Callable[..., Path]) -> Policy:
    return load_policy(write_policy(POLICY))


def judge(
    gate: Gate, policy: Policy, tool: str, who: Identity | None, session: str = "s"
) -> Verdict:
    return gate.judge(policy, Call(session, tool, {}, who))[0]


def test_claims_conditions_read_the_token_and_fail_closed_without_one(policy: Policy) -> None:
    gate = Gate(MemoryStore)
    assert judge(gate, policy, "pods_delete", user("alice", groups=["sre", "dev"])).allowed
    refused = judge(gate, policy, "pods_delete", user("bob", groups=["dev"]))
    assert not refused.allowed and refused.rule == "sre only"
    stdio = judge(gate, policy, "pods_delete", None)
    assert not stdio.allowed and "carries no token" in str(stdio.reason)
    # A namespaced claim (its name has dots) is found whole; a deny's when without a
    # token cannot tell, so the deny applies.
    pro = user("a", **{"https://example.com/tier": "pro"})
    free = user("b", **{"https://example.com/tier": "free"})
    assert judge(gate, policy, "tiers", pro).allowed
    assert not judge(gate, policy, "tiers", free).allowed
    assert not judge(gate, policy, "tiers", None).allowed


def test_user_counters_are_shared_across_sessions_and_need_a_user(policy: Policy) -> None:
    gate = Gate(MemoryStore)
    alice, bob = user("alice"), user("bob")
    outcomes = [judge(gate, policy, "echo", alice, session=s).allowed for s in ("a", "b", "c")]
    assert outcomes == [True, True, False]  # two per user, whatever the session
    assert judge(gate, policy, "echo", bob, session="a").allowed
    stdio = judge(gate, policy, "echo", None)
    assert not stdio.allowed and "counts per user" in str(stdio.reason)
    # user_key: the claim tells users apart; a token without it cannot be counted.
    first = user("alice", email="a@example.com")
    same_address = user("alice-2", email="a@example.com")
    assert judge(gate, policy, "mail", first).allowed
    assert not judge(gate, policy, "mail", same_address).allowed
    no_claim = judge(gate, policy, "mail", user("carol"))
    assert not no_claim.allowed and "claims.email" in str(no_claim.reason)


def test_policy_warns_of_rules_that_need_a_token(policy: Policy) -> None:
    assert policy.reads_identity


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("{rate_limit: {max: 1, window: 60, user_key: claims.email}}", "scope: user only"),
        ("{rate_limit: {max: 1, window: 60, scope: user, user_key: email}}", "claim path"),
    ],
)
def test_user_key_errors(write_policy: Callable[..., Path], rule: str, error: str) -> None:
    path = write_policy(f'version: "1"\ntools:\n  t:\n    rules:\n      - {rule}\n')
    _, errors = check_policy(str(path))
    assert any(error in str(e) for e in errors), errors


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("issuer=https://login.example.com", "needs audience"),
        ("issuer=http://login.example.com,audience=a", "https URL"),
        ("issuer=https://login.example.com,audience=a,skew=3600", "skew="),
        ("issuer=https://login.example.com,audience=a,color=red", "no key 'color'"),
        ("issuer=https://login.example.com,audience=a,audience=b", "twice"),
    ],
)
def test_auth_option_errors(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_auth(spec)


def test_auth_option_reads_every_key() -> None:
    options = parse_auth(
        "issuer=http://127.0.0.1:9000,audience=https://mcp.example.com/mcp,"
        "scopes=mcp:tools mcp:admin,jwks=http://127.0.0.1:9000/keys,skew=10"
    )
    assert options.scopes == ("mcp:tools", "mcp:admin")
    assert (options.jwks, options.skew) == ("http://127.0.0.1:9000/keys", 10.0)
