"""The policy: load a YAML file, validate every part of it, compile it for the engine."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mcpwall.policy.model import Policy, PolicyError, PolicyInvalid
from mcpwall.policy.tree import YMap

__all__ = ["Policy", "PolicyError", "PolicyInvalid", "check_policy", "load_policy"]


def check_policy(path: str | Path) -> tuple[Policy | None, list[PolicyError]]:
    """Read and compile the policy at ``path``: the policy (None if any error) and every
    error and warning, in file order."""
    # The compiler needs the engine's operators, which need this package's model:
    # importing it here, not at the top, keeps that cycle out of import time.
    from mcpwall.policy import cache
    from mcpwall.policy.compile import compile_policy

    name = str(path)
    try:
        with open(path, "rb") as file:
            owner = os.fstat(file.fileno()).st_uid
            raw = file.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [PolicyError(name, 1, 1, f"cannot read the policy file: {reason}")]
    digest = hashlib.sha256(raw).hexdigest()
    tree = cache.recall(digest, owner)
    if tree is not None:
        return compile_policy(tree, name, digest)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [PolicyError(name, line, 1, "the policy file is not valid UTF-8")]
    # The YAML parser is loaded only when the cache has not got the policy.
    from mcpwall.policy.source import SourceError, load_text

    try:
        data = load_text(text)
    except SourceError as exc:
        return None, [
            PolicyError(name, mark.line, mark.col, message, hint)
            for mark, message, hint in exc.problems
        ]
    policy, problems = compile_policy(data, name, digest)
    if policy is not None and isinstance(data, YMap):
        cache.remember(digest, owner, data)
    return policy, problems


def load_policy(path: str | Path) -> Policy:
    """The compiled policy at ``path``; raises PolicyInvalid with every error."""
    policy, problems = check_policy(path)
    if policy is None:
        raise PolicyInvalid([p for p in problems if p.severity == "error"])
    return policy
