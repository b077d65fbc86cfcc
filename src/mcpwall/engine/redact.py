"""Redaction of secrets in tool results, before they reach the agent.

Built-in detectors, each named in the policy's ``redact.detectors``:

- ``kubernetes_secrets``: the values under ``data:`` and ``stringData:`` of Secret
  manifests, in YAML or JSON output (``resources_get``, ``resources_list``);
- ``kubeconfig``: credentials in kubeconfig text (``token``, ``client-key-data``,
  ``client-certificate-data``, ``password``, ``id-token``, ``refresh-token``,
  ``client-secret``), as ``configuration_view`` prints them;
- ``bearer_tokens``: ``Bearer <token>``;
- ``private_keys``: PEM private key blocks;
- ``cloud_keys``: AWS access key ids and secret keys, GitHub, Stripe and Slack tokens.

Policy patterns (``redact.patterns``) are RE2, like conditions. Redaction is reported
by detector and count, never with what was found.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import re2

REDACTED = "[redacted]"

Finder = Callable[[str], tuple[str, int]]


def _substitute(pattern: str, flags: int = 0, group: int = 0, linear: bool = False) -> Finder:
    """Replace the whole match, or only group ``group`` of it. ``linear``: with RE2,
    which scans a large result tens of times faster than ``re`` where the pattern needs
    no lookaround or backreference."""
    compiled: Any = re2.compile(pattern) if linear else re.compile(pattern, flags)

    def only_group(match: Any) -> str:
        whole, start = match.group(0), match.start()
        return whole[: match.start(group) - start] + REDACTED + whole[match.end(group) - start :]

    def find(text: str) -> tuple[str, int]:
        return compiled.subn(REDACTED if group == 0 else only_group, text)

    return find


_KUBECONFIG_FIELDS = (
    r"token|client-key-data|client-certificate-data|password|id-token|refresh-token"
    r"|client-secret|access-token"
)
# YAML `  token: abc` and JSON `"token": "abc"`; an already redacted value is left.
_kubeconfig_yaml = _substitute(
    rf"^(\s*-?\s*(?:{_KUBECONFIG_FIELDS})\s*:\s*)(?!\[redacted\])(\S.*?)\s*$",
    re.MULTILINE,
    group=2,
)
_kubeconfig_json = _substitute(rf'"(?:{_KUBECONFIG_FIELDS})"\s*:\s*"((?:[^"\\]|\\.)+)"', group=1)


def _kubeconfig(text: str) -> tuple[str, int]:
    text, first = _kubeconfig_yaml(text)
    text, second = _kubeconfig_json(text)
    return text, first + second


_SECRET_KIND = re.compile(r"(?im)^\s*-?\s*kind\s*:\s*[\"']?Secret[\"']?\s*$")
_DATA_LINE = re.compile(r"^(?P<indent>[ \t]*-?[ \t]*)(?:data|stringData)[ \t]*:(?P<inline>.*)$")


def _kubernetes_secrets(text: str) -> tuple[str, int]:
    """The values of the data maps of Secrets, in JSON or YAML output."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            count = _kubernetes_secrets_json(value)
            if not count:
                return text, 0
            return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), count
    return _kubernetes_secrets_yaml(text)


def _kubernetes_secrets_yaml(text: str) -> tuple[str, int]:
    """The values of the data maps in YAML Secret manifests (indentation-aware). Once a
    text holds a Secret, every data map in it is redacted: better one ConfigMap too many
    than one Secret too few."""
    if not _SECRET_KIND.search(text):
        return text, 0
    lines = text.split("\n")
    out: list[str] = []
    count = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = _DATA_LINE.match(line)
        if match is None:
            out.append(line)
            continue
        inline = match.group("inline").strip()
        if inline and inline not in ("{}", "null", "~", REDACTED):  # data: {key: value}
            out.append(f"{line[: match.start('inline')]} {REDACTED}")
            count += 1
            continue
        out.append(line)
        parent = len(match.group("indent").replace("-", " "))
        entry_indent: int | None = None
        while index < len(lines):
            line = lines[index]
            stripped = line.lstrip()
            indent = len(line) - len(stripped)
            if stripped and indent <= parent:
                break
            index += 1
            if not stripped:
                out.append(line)
                continue
            if entry_indent is None:
                entry_indent = indent
            if indent > entry_indent:
                continue  # the rest of a value spread over lines (a block scalar): dropped
            key, colon, value = line.partition(":")
            value = value.strip()
            continued = index < len(lines) and _indent(lines[index]) > entry_indent
            if colon and value != REDACTED and (value or continued):
                out.append(f"{key}: {REDACTED}")
                count += 1
            else:
                out.append(line)
    return "\n".join(out), count


def _indent(line: str) -> int:
    stripped = line.lstrip()
    return len(line) - len(stripped) if stripped else -1


def _kubernetes_secrets_json(value: Any) -> int:
    """Redact, in place, the data maps of Secret objects in parsed JSON."""
    count = 0
    if isinstance(value, dict):
        if str(value.get("kind", "")).lower() == "secret":
            for field in ("data", "stringData"):
                block = value.get(field)
                if isinstance(block, dict):
                    for key in block:
                        if block[key] != REDACTED:
                            block[key] = REDACTED
                            count += 1
        for item in value.values():
            count += _kubernetes_secrets_json(item)
    elif isinstance(value, list):
        for item in value:
            count += _kubernetes_secrets_json(item)
    return count


DETECTORS: dict[str, Finder] = {
    "kubernetes_secrets": _kubernetes_secrets,
    "kubeconfig": _kubeconfig,
    "bearer_tokens": _substitute(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})", group=1, linear=True),
    "private_keys": _substitute(
        r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----"
    ),
    "cloud_keys": _substitute(
        r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
        r"|(?i:aws_secret_access_key)\s*[=:]\s*[A-Za-z0-9/+=]{30,}"
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b"
        r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"
        r"|\bxox[abpr]-[A-Za-z0-9-]{10,}\b",
        linear=True,
    ),
}


@dataclass(frozen=True)
class Pattern:
    name: str
    search: Any  # a compiled RE2 pattern
    replacement: str


@dataclass(frozen=True)
class Redactor:
    detectors: tuple[str, ...]
    patterns: tuple[Pattern, ...]

    def result(self, result: dict[str, Any]) -> Counter[str]:
        """Redact a tools/call result in place; how many of what were redacted."""
        found: Counter[str] = Counter()
        content = result.get("content")
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                if isinstance(block.get("text"), str):
                    block["text"] = self._text(block["text"], found)
                resource = block.get("resource")
                if isinstance(resource, dict) and isinstance(resource.get("text"), str):
                    resource["text"] = self._text(resource["text"], found)
        if "structuredContent" in result:
            if "kubernetes_secrets" in self.detectors:
                found["kubernetes_secrets"] += _kubernetes_secrets_json(result["structuredContent"])
            result["structuredContent"] = self._walk(result["structuredContent"], found)
        return +found

    def _walk(self, value: Any, found: Counter[str]) -> Any:
        if isinstance(value, str):
            return self._text(value, found)
        if isinstance(value, list):
            return [self._walk(item, found) for item in value]
        if isinstance(value, dict):
            return {key: self._walk(item, found) for key, item in value.items()}
        return value

    def _text(self, text: str, found: Counter[str]) -> str:
        for name in self.detectors:
            text, count = DETECTORS[name](text)
            found[name] += count
        for pattern in self.patterns:
            text, count = _replace_all(pattern, text)
            found[pattern.name] += count
        return text


def _replace_all(pattern: Pattern, text: str) -> tuple[str, int]:
    pieces: list[str] = []
    start = 0
    count = 0
    while True:
        match = pattern.search.search(text, start)
        if match is None or match.end() == match.start():
            break
        pieces.append(text[start : match.start()])
        pieces.append(pattern.replacement)
        start = match.end()
        count += 1
    if not count:
        return text, 0
    pieces.append(text[start:])
    return "".join(pieces), count
