"""Arguments checked against the tool's own ``inputSchema``, as its tools/list gave it.

Each schema is compiled when first needed (jsonschema-rs: JSON Schema 2020-12 and the
earlier drafts, by ``$schema``) and shared by every tool and session that shows the
same one. A schema that does not compile denies the tool's calls.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

log = logging.getLogger("mcpwall")

_compiled: dict[str, Any] = {}  # schema digest -> validator, across sessions
_MAX_COMPILED = 4096


class Schemas:
    """The input schemas of one server's tools, as its latest tool list showed them."""

    def __init__(self) -> None:
        self._by_tool: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, Any] = {}  # tool -> validator, once compiled

    def learn(self, tools: list[Any]) -> None:
        for tool in tools:
            if type(tool) is not dict or type(tool.get("name")) is not str:
                continue
            name = tool["name"]
            schema = tool.get("inputSchema")
            if self._by_tool.get(name) != schema:
                self._validators.pop(name, None)
            if type(schema) is dict:
                self._by_tool[name] = schema
            else:
                self._by_tool.pop(name, None)

    def problem(self, tool: str, args: dict[str, Any]) -> str | None:
        """Why the arguments do not fit the tool's schema; None if they do."""
        validator = self._validators.get(tool)
        if validator is None:
            schema = self._by_tool.get(tool)
            if schema is None:
                return (
                    f'the input schema of "{tool}" is not known, so its arguments cannot be '
                    "checked: the server has not listed it in this session"
                )
            validator = self._validators[tool] = _compile(tool, schema)
        if validator is _UNUSABLE:
            return f'the input schema of "{tool}" is not a valid JSON Schema'
        if validator.is_valid(args):
            return None
        error = next(iter(validator.iter_errors(args)))
        where = "/".join(str(step) for step in error.instance_path) or "(the arguments)"
        return f'arguments of "{tool}" do not match its input schema: {where}: {error.message}'


_UNUSABLE = object()


def _compile(tool: str, schema: dict[str, Any]) -> Any:
    import jsonschema_rs  # here: only policies that check arguments against schemas need it

    digest = hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()
    validator = _compiled.get(digest)
    if validator is None:
        try:
            validator = jsonschema_rs.validator_for(schema, retriever=_no_retrieval)
        except (ValueError, jsonschema_rs.ValidationError) as exc:
            reason = str(exc).partition("\n")[0]
            log.warning("the input schema of %s does not compile: %s", tool, reason)
            validator = _UNUSABLE
        if len(_compiled) >= _MAX_COMPILED:  # a server that changes schemas without end
            _compiled.clear()
        _compiled[digest] = validator
    return validator


def _no_retrieval(uri: str) -> Any:
    """A server's schema never makes mcpwall fetch anything: remote $refs fail."""
    raise ValueError(f"mcpwall does not fetch referenced schemas ({uri})")
