"""Policies enforced end to end: the official SDK client, mcpwall as a process, real
SDK servers of our own that record every call they execute.

Each test runs in both protocol eras: "auto" negotiates 2026-07-28 with our servers
(stateless requests, resultType on every result), "legacy" the initialize handshake.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Record, server_cmd
from tests.e2e.sdk import agent, decision, text, through_mcpwall

pytestmark = pytest.mark.anyio

SEED_POLICY = """
tools:
  vm_clone:
    rules:
      - action: allow
      - rate_limit: {max: 10, window: 60}
  pods_delete:
    rules:
      - action: deny
        reason: "Pod deletion is not permitted via AI agents"
"""

# POLICY.md, "Complete examples": the GitHub and Stripe policies, unchanged.
GITHUB_POLICY = """
version: "1"
description: "GitHub MCP server policies"

hide:
  - transfer_repository
  - list_webhooks

tools:
  create_issue:
    rules:
      - name: "hourly issue limit"
        rate_limit: 5/hour
        on_deny: "Hourly limit of 5 new issues reached"

  create_pull_request:
    rules:
      - name: "hourly pr limit"
        rate_limit: 3/hour
        on_deny: "Hourly limit of 3 new pull requests reached"

  delete_repository:
    rules:
      - name: "block repo deletion"
        action: "deny"
        on_deny: "Repository deletion is not permitted via AI agents"

  "*":
    rules:
      - name: "global rate limit"
        rate_limit: 60/minute
"""

STRIPE_POLICY = """
version: "1"
description: "Stripe MCP server policies"

tools:
  create_charge:
    rules:
      - name: "max single charge"
        conditions:
          - path: "args.amount"
            op: "lte"
            value: 50000
        on_deny: "Single charge cannot exceed $500.00"

      - name: "daily spend cap"
        conditions:
          - path: "state.create_charge.daily_spend"
            op: "lte"
            value: 1000000
        on_deny: "Daily spending cap of $10,000.00 reached"
        state:
          counter: "daily_spend"
          window: "day"
          increment_from: "args.amount"

      - name: "allowed currencies"
        conditions:
          - path: "args.currency"
            op: "in"
            value: ["usd", "eur"]
        on_deny: "Only USD and EUR charges are permitted"

  create_refund:
    rules:
      - name: "refund limit"
        conditions:
          - path: "args.amount"
            op: "lte"
            value: 10000
        on_deny: "Refunds over $100.00 require manual processing"

      - name: "daily refund count"
        conditions:
          - path: "state.create_refund.daily_count"
            op: "lte"
            value: 10
        on_deny: "Daily refund limit (10) reached"
        state:
          counter: "daily_count"
          window: "day"

  delete_customer:
    rules:
      - name: "block destructive action"
        action: "deny"
        on_deny: "Customer deletion is not permitted via AI agents"

  "*":
    rules:
      - name: "global rate limit"
        conditions:
          - path: "state._global.calls_per_minute"
            op: "lte"
            value: 60
        on_deny: "Rate limit: maximum 60 tool calls per minute"
        state:
          counter: "calls_per_minute"
          window: "minute"
"""

ERAS = pytest.mark.parametrize("mode", ["auto", "legacy"])


@ERAS
async def test_seed_policy_behaves_as_the_seed_page_says(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    params = through_mcpwall(write_policy(SEED_POLICY), server_cmd("k8s_like.py"))
    async with agent(params, mode) as client:
        for number in range(10):
            result = await client.call_tool("vm_clone", {"source": "vm-a", "target": f"b{number}"})
            assert not result.is_error, text(result)
        eleventh = await client.call_tool("vm_clone", {"source": "vm-a", "target": "b10"})
        assert eleventh.is_error
        assert text(eleventh).startswith("[mcpwall] Denied by policy: Rate limit of 10 calls")
        retry = decision(eleventh)["retry_after_s"]
        assert isinstance(retry, int) and 55 <= retry <= 60
        denied = await client.call_tool("pods_delete", {"name": "web-1"})
        assert denied.is_error
        assert text(denied) == (
            "[mcpwall] Denied by policy: Pod deletion is not permitted via AI agents"
        )
    # Rate limits are tracked per agent session: a new session starts fresh.
    async with agent(params, mode) as client:
        result = await client.call_tool("vm_clone", {"source": "vm-a", "target": "c"})
        assert not result.is_error
    assert record.tools() == ["vm_clone"] * 11  # the 11th and pods_delete never arrived


@ERAS
async def test_tools_list_keeps_what_the_server_says(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    policy = write_policy("""
        version: "1"
        hide: ["pods_*"]
        tools: {}
    """)
    direct_params = through_mcpwall(
        write_policy('version: "1"\ntools: {}\n'), server_cmd("k8s_like.py")
    )
    async with agent(direct_params, mode) as client:
        everything = {tool.name: tool for tool in (await client.list_tools()).tools}
    async with agent(through_mcpwall(policy, server_cmd("k8s_like.py")), mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        hidden = await client.call_tool("pods_list", {})
    assert set(everything) - set(listed) == {"pods_list", "pods_delete"}
    for name, tool in listed.items():
        assert tool == everything[name]  # annotations, schemas, output schema: unchanged
    assert listed["vm_clone"].annotations is not None
    assert listed["vm_clone"].annotations.destructive_hint is True
    assert hidden.is_error and 'Tool "pods_list" is hidden by policy' in text(hidden)
    assert record.tools() == []


@ERAS
async def test_default_deny_lists_and_allows_only_listed_tools(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    policy = write_policy("""
        version: "1"
        default: deny
        tools:
          pods_list:
            rules: []
          "vm_*":
            rules:
              - action: allow
    """)
    async with agent(through_mcpwall(policy, server_cmd("k8s_like.py")), mode) as client:
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert names == ["pods_list", "vm_clone"]
        assert not (await client.call_tool("pods_list", {})).is_error
        echo = await client.call_tool("echo", {"message": "hi"})
        assert echo.is_error and "not permitted by policy" in text(echo)
    assert record.tools() == ["pods_list"]


@ERAS
async def test_intercept_github_example_runs_unchanged(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    params = through_mcpwall(write_policy(GITHUB_POLICY), server_cmd("intercept_examples.py"))
    async with agent(params, mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "transfer_repository" not in names and "list_webhooks" not in names
        outcomes = [
            (await client.call_tool("create_issue", {"title": f"t{i}"})).is_error for i in range(6)
        ]
        assert outcomes == [False] * 5 + [True]
        deleted = await client.call_tool("delete_repository", {"name": "prod"})
        assert text(deleted).endswith("Repository deletion is not permitted via AI agents")
        # The global limit counted the 5 issues that went through, and only those:
        # the refused 6th reserved nothing (all or none).
        searches = [
            (await client.call_tool("search_code", {"query": str(i)})).is_error for i in range(56)
        ]
        assert searches == [False] * 55 + [True]
    assert record.tools().count("create_issue") == 5
    assert "delete_repository" not in record.tools()


@ERAS
async def test_intercept_stripe_example_runs_unchanged(
    mode: str, write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    params = through_mcpwall(write_policy(STRIPE_POLICY), server_cmd("intercept_examples.py"))
    async with agent(params, mode) as client:
        big = await client.call_tool("create_charge", {"amount": 60000, "currency": "usd"})
        assert text(big).endswith("Single charge cannot exceed $500.00")
        pounds = await client.call_tool("create_charge", {"amount": 100, "currency": "gbp"})
        assert text(pounds).endswith("Only USD and EUR charges are permitted")
        # A declined charge (isError) spent nothing: its amount is rolled back.
        declined = await client.call_tool("create_charge", {"amount": 13, "currency": "usd"})
        assert declined.is_error and "card declined" in text(declined)
        for _ in range(20):
            charge = await client.call_tool("create_charge", {"amount": 50000, "currency": "eur"})
            assert not charge.is_error, text(charge)
        over = await client.call_tool("create_charge", {"amount": 1, "currency": "usd"})
        assert text(over).startswith(
            "[mcpwall] Denied by policy: Daily spending cap of $10,000.00 reached"
        )
        refunds = [
            (await client.call_tool("create_refund", {"amount": 500})).is_error for _ in range(11)
        ]
        assert refunds == [False] * 10 + [True]
        too_big = await client.call_tool("create_refund", {"amount": 20000})
        assert text(too_big).endswith("Refunds over $100.00 require manual processing")
        gone = await client.call_tool("delete_customer", {"customer": "cus_1"})
        assert text(gone).endswith("Customer deletion is not permitted via AI agents")
    charges = [c for c in record.calls() if c["tool"] == "create_charge"]
    assert len(charges) == 21  # the declined one and twenty of 50000
    assert "delete_customer" not in record.tools()


async def test_counters_survive_a_restart(
    write_policy: Callable[..., Path], record: Record, home: Path
) -> None:
    policy = write_policy("""
        version: "1"
        tools:
          create_refund:
            rules:
              - name: "daily refund count"
                conditions:
                  - path: "state.create_refund.daily_count"
                    op: "lt"
                    value: 3
                state:
                  counter: "daily_count"
                  window: "day"
          create_issue:
            rules:
              - name: "issues per hour"
                rate_limit: 2/hour
    """)
    params = through_mcpwall(policy, server_cmd("intercept_examples.py"))
    async with agent(params) as client:
        for _ in range(2):
            assert not (await client.call_tool("create_refund", {"amount": 1})).is_error
            assert not (await client.call_tool("create_issue", {"title": "x"})).is_error
    assert (home / ".mcpwall" / "state.sqlite").exists()  # the embedded default store
    async with agent(params) as client:
        # "lt 3" on the counter this call adds to: after the call it must stay below 3.
        assert (await client.call_tool("create_refund", {"amount": 1})).is_error
        assert (await client.call_tool("create_issue", {"title": "x"})).is_error
    assert record.tools().count("create_refund") == 2
