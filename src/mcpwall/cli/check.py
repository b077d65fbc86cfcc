"""``mcpwall check``: how the policy decides one call, and why, without any server.

The verdict is the proxy's: the same ``decide``, with the same counters and pins read
from the same store (so "why is my agent denied right now?" has an answer), never
changed: the evaluation is a dry run. With ``--tools`` (a saved tools/list result), the
server's input schemas and the pins of its tools count too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from mcpwall.cli.main import UserError, add_state_options, state_options
from mcpwall.engine.decide import NO_FACTS, Call, ToolFacts
from mcpwall.engine.pins import fingerprint, listing
from mcpwall.engine.schemas import Schemas
from mcpwall.policy import PolicyInvalid, load_policy
from mcpwall.state.base import CounterStore, StoreUnavailable

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
    parser.add_argument(
        "--tools",
        metavar="FILE",
        help="the server's tools: a saved tools/list result (JSON), to check the call "
        "against their input schemas and pins as the proxy does",
    )
    parser.add_argument(
        "--server",
        metavar="NAME",
        help="whose pins to read with --tools: the proxy's --server-name, else its command "
        "line or URL (default: the pins of any server)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_options(parser)
    ns = parser.parse_args(argv)
    args = _arguments(ns.args)
    tools = _tools(ns.tools) if ns.tools else None
    try:
        policy = load_policy(ns.config)
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise UserError(f"the policy {ns.config} does not validate") from None

    options = state_options(ns)
    gate = options.gate()
    try:
        facts: ToolFacts = NO_FACTS
        if tools is not None:
            facts = SavedTools(tools, gate.store, options.prefix, ns.server)
        decision, _ = gate.judge(policy, Call(ns.session, ns.tool, args), facts, commit=False)
    finally:
        gate.close()
    approval = decision.approval
    step = None if decision.step is None else decision.step.value
    if ns.format == "json":
        body = {
            "allowed": decision.allowed,
            "monitored": decision.monitored,
            "step": step,
            **decision.as_meta(),
        }
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
        print(f"  step:   {step}")
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


def _tools(path: str) -> list[Any]:
    """The tool definitions in a saved tools/list result: the JSON-RPC response, its
    result, or the list of tools itself."""
    try:
        with open(path, "rb") as file:
            value = json.load(file)
    except OSError as exc:
        raise UserError(f"cannot read --tools {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--tools {path} is not JSON: {exc}") from None
    if isinstance(value, dict) and isinstance(value.get("result"), dict):
        value = value["result"]
    if isinstance(value, dict):
        value = value.get("tools")
    if not isinstance(value, list):
        raise UserError(f"--tools {path} holds no list of tools (a tools/list result)")
    return value


class SavedTools:
    """The ToolFacts of a saved tools/list result: its input schemas, and its
    definitions against the pins in the store (read, never written: a tool not pinned
    yet would be pinned by the proxy on sight, so it is not held)."""

    def __init__(
        self,
        tools: list[Any],
        store: Callable[[], CounterStore],
        prefix: str,
        server: str | None,
    ) -> None:
        self._schemas = Schemas()
        self._schemas.learn(tools)
        self._listed = {
            tool["name"]: fingerprint(tool)
            for tool in tools
            if isinstance(tool, dict) and isinstance(tool.get("name"), str)
        }
        self._store = store
        self._prefix = prefix
        self._server = server

    def held(self, tool: str) -> bool | None:
        seen = self._listed.get(tool)
        if seen is None:
            return False
        try:
            pins = listing(self._store(), self._prefix)
        except StoreUnavailable as exc:
            print(f"mcpwall check: the state store is unavailable: {exc}", file=sys.stderr)
            return None
        return any(
            pin.accepted != seen
            for server, name, pin in pins
            if name == tool and self._server in (None, server)
        )

    def schema_problem(self, tool: str, args: dict[str, Any]) -> str | None:
        return self._schemas.problem(tool, args)
