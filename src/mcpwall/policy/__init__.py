"""The policy: load a YAML file, validate every part of it, compile it for the engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mcpwall.policy.model import Policy, PolicyError, PolicyInvalid

__all__ = ["Policy", "PolicyError", "PolicyInvalid", "check_policy", "load_policy"]


def check_policy(path: str | Path) -> tuple[Policy | None, list[PolicyError]]:
    """Read and compile the policy at ``path``: the policy (None if any error) and every
    error and warning, in file order."""
    # The compiler needs the engine's operators, which need this package's model:
    # importing it here, not at the top, keeps that cycle out of import time.
    from mcpwall.policy.compile import compile_policy
    from mcpwall.policy.source import SourceError, load_text

    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [PolicyError(name, 1, 1, f"cannot read the policy file: {reason}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [PolicyError(name, line, 1, "the policy file is not valid UTF-8")]
    try:
        data = load_text(text)
    except SourceError as exc:
        return None, [
            PolicyError(name, mark.line, mark.col, message, hint)
            for mark, message, hint in exc.problems
        ]
    return compile_policy(data, name, hashlib.sha256(raw).hexdigest())


def load_policy(path: str | Path) -> Policy:
    """The compiled policy at ``path``; raises PolicyInvalid with every error."""
    policy, problems = check_policy(path)
    if policy is None:
        raise PolicyInvalid([p for p in problems if p.severity == "error"])
    return policy
