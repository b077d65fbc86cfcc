"""``mcpwall check``: how the policy decides one call, and why, without any server.

Counters are read from the same store the proxy uses (so "why is my agent denied right
now?" has an answer) but never changed: the evaluation is a dry run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mcpwall.cli.main import UserError, add_state_options, state_options
from mcpwall.policy import PolicyInvalid, load_policy

EXIT_ALLOWED = 0
EXIT_DENIED = 1


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall check",
        description="Evaluate one tools/call against a policy and print the decision and "
        "the rule that made it. Exit status: 0 allowed, 1 denied, 2 error.",
    )
    parser.add_argument(
        "-c", "--config", metavar="POLICY", required=True, help="the policy YAML file"
    )
    parser.add_argument("tool", help="the tool name, as the agent would call it")
    parser.add_argument(
        "--args",
        metavar="JSON",
        default="{}",
        help="the call's arguments as a JSON object, e.g. '{\"amount\": 500}'",
    )
    parser.add_argument(
        "--session",
        metavar="ID",
        default="check",
        help="the agent session whose session-scoped counters to read",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_options(parser)
    ns = parser.parse_args(argv)
    args = _arguments(ns.args)
    try:
        policy = load_policy(ns.config)
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise UserError(f"the policy {ns.config} does not validate") from None

    gate = state_options(ns).gate()
    try:
        decision = gate.judge(policy, ns.session, ns.tool, args, commit=False)
    finally:
        gate.close()
    approval = decision.approval
    if ns.format == "json":
        body = {"allowed": decision.allowed, "monitored": decision.monitored, **decision.as_meta()}
        body["approval"] = approval.name if approval else None
        print(json.dumps(body, indent=2))
    elif approval is not None:
        print(f"allowed once a human approves: {ns.tool}")
        print(f"  rule:   {approval.name}")
        if approval.reason:
            print(f"  reason: {approval.reason}")
    elif decision.allowed and not decision.monitored:
        print(f"allowed: {ns.tool}")
    else:
        verdict = "denied (monitor mode: it would pass)" if decision.monitored else "denied"
        print(f"{verdict}: {ns.tool}")
        print(f"  rule:   {decision.rule}")
        print(f"  reason: {decision.reason}")
        if decision.retry_after_s is not None:
            print(f"  retry after: {decision.retry_after_s} s")
    return EXIT_ALLOWED if decision.allowed else EXIT_DENIED


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--args is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise UserError("--args must be a JSON object, e.g. '{\"amount\": 500}'")
    return value
