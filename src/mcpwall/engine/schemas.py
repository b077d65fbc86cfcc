"""Arguments checked against the tool's own ``inputSchema``, as its tools/list gave it.

Each schema is compiled once (jsonschema-rs, JSON Schema 2020-12 and earlier drafts) and
shared by every tool and session that shows the same one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import jsonschema_rs
import orjson

log = logging.getLogger("mcpwall")

_compiled: dict[str, Any] = {}  # schema digest -> validator, across sessions


class Schemas:
    """The input schemas of one server's tools."""

    def __init__(self) -> None:
        self._by_tool: dict[str, Any] = {}

    def learn(self, tools: list[Any]) -> None:
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            schema = tool.get("inputSchema")
            if not isinstance(schema, dict):
                continue
            digest = hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()
            validator = _compiled.get(digest)
            if validator is None:
                try:
                    validator = jsonschema_rs.validator_for(schema)
                except (ValueError, jsonschema_rs.ValidationError) as exc:
                    log.warning("the input schema of %s does not compile: %s", tool["name"], exc)
                    continue
                _compiled[digest] = validator
            self._by_tool[tool["name"]] = validator

    def problem(self, tool: str, args: dict[str, Any]) -> str | None:
        """Why the arguments do not fit the tool's schema; None if they do."""
        validator = self._by_tool.get(tool)
        if validator is None:
            return (
                f'the input schema of "{tool}" is not known yet, so its arguments cannot '
                "be checked: list the tools first"
            )
        if validator.is_valid(args):
            return None
        error = next(iter(validator.iter_errors(args)))
        where = "/".join(str(step) for step in error.instance_path) or "(the arguments)"
        return f'arguments of "{tool}" do not match its input schema: {where}: {error.message}'
