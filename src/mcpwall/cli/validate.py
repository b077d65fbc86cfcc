"""``mcpwall validate``: every error of a policy file at once, each with file:line:col."""

from __future__ import annotations

import argparse
import json
import sys

from mcpwall.policy import Policy, PolicyError, check_policy


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mcpwall validate",
        description="Check a policy file without starting anything. Prints every error, "
        "each as file:line:col: message, with a hint; exit status 1 if any.",
    )
    parser.add_argument(
        "-c", "--config", metavar="POLICY", required=True, help="the policy YAML file"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    ns = parser.parse_args(argv)
    policy, problems = check_policy(ns.config)
    errors = [p for p in problems if p.severity == "error"]
    if ns.format == "json":
        print(
            json.dumps(
                {"valid": policy is not None, "problems": [p.as_json() for p in problems]}, indent=2
            )
        )
    else:
        for problem in problems:
            print(_line(problem))
        if policy is not None:
            print(f"{ns.config}: valid: {summary(policy)}")
        else:
            warnings = len(problems) - len(errors)
            counts = f"{len(errors)} error(s)" + (f", {warnings} warning(s)" if warnings else "")
            print(f"{ns.config}: invalid: {counts}", file=sys.stderr)
    return 0 if policy is not None else 1


def _line(problem: PolicyError) -> str:
    label = "" if problem.severity == "error" else "warning: "
    text = f"{problem.file}:{problem.line}:{problem.col}: {label}{problem.message}"
    return text + (f"\n    hint: {problem.hint}" if problem.hint else "")


def summary(policy: Policy) -> str:
    tools = len(policy.entries) + len(policy.globs) + (1 if policy.wildcard else 0)
    rules = (
        sum(len(e.rules) for e in policy.entries.values())
        + sum(len(e.rules) for _, e in policy.globs)
        + len(policy.wildcard)
    )
    hidden = len(policy.hidden) + (1 if policy.hidden_pattern is not None else 0)
    parts = [
        f"{tools} tool entr{'y' if tools == 1 else 'ies'}",
        f"{rules} rule{'' if rules == 1 else 's'}",
        f"{len(policy.counters)} counter{'' if len(policy.counters) == 1 else 's'}",
        f"{hidden} hide entr{'y' if hidden == 1 else 'ies'}" if hidden else "",
        f"default {'deny' if policy.default_deny else 'allow'}",
        "monitor mode" if policy.monitor else "",
        f"pin {policy.pin_mode}",
        "arguments checked against schemas" if policy.validate_arguments else "",
        "redacts results" if policy.redactor is not None else "",
    ]
    return ", ".join(part for part in parts if part)
