"""Collecting a policy's problems: every error and warning, each at its position."""

from __future__ import annotations

from typing import Any

from mcpwall.policy.model import PolicyError
from mcpwall.policy.tree import Mark, YList, YMap


class Reporter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[PolicyError] = []

    def error(self, mark: Mark, message: str, hint: str = "") -> None:
        self.problems.append(PolicyError(self.file, mark.line, mark.col, message, hint))

    def warn(self, mark: Mark, message: str, hint: str = "") -> None:
        self.problems.append(
            PolicyError(self.file, mark.line, mark.col, message, hint, severity="warning")
        )

    def unknown_keys(self, mapping: YMap, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            import difflib  # here: only a policy with a misspelt key needs it

            close = difflib.get_close_matches(key, allowed, n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"{what} keys are: " + ", ".join(allowed)
            )
            self.error(mapping.key_at(key), f'unknown key "{key}" in {what}', hint)


def shown(value: Any) -> str:
    """A value as an error message quotes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (YMap, YList)):
        return "a " + kind(value)
    return str(value)


def kind(value: Any) -> str:
    """What a value is, in the user's words."""
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return "number"
    return "string"
