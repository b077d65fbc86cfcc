"""Read a policy file into plain Python values that remember their line and column.

PyYAML's C parser builds the node tree (fast, with marks); this module turns the nodes
into dicts, lists and scalars itself, because the policy needs three things no stock
loader gives at once:

- positions for every key and value, so that every error can say file:line:col;
- duplicate keys refused (two ``pods_delete:`` keys are an error, never an overwrite);
- YAML 1.2 core scalars, as Intercept's Go loader reads them: ``yes``, ``on`` and
  ``12:30`` are strings, not the YAML 1.1 booleans and sexagesimal numbers.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml._yaml import CParser
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from mcpwall.policy.tree import Mark, YList, YMap


class SourceError(Exception):
    """The file is not YAML we can read; every problem found, each with its position."""

    def __init__(self, problems: list[tuple[Mark, str, str]]) -> None:
        super().__init__(problems[0][1])
        self.problems = problems


_PLAIN = "?plain"
_STR = "tag:yaml.org,2002:str"
_KNOWN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")


class _Parser(CParser, BaseResolver):
    """libyaml's parser and composer, with implicit tag resolution turned off.

    Plain scalars come out tagged ``?plain`` so that this module, not PyYAML's YAML 1.1
    resolver, decides what they mean.
    """

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        BaseResolver.__init__(self)

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def load_text(text: str) -> Any:
    """Parse one YAML document into YMap / YList / scalars. Raises SourceError."""
    parser = _Parser(text)
    try:
        root = parser.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise SourceError([_syntax_problem(text, exc)]) from None
    except yaml.YAMLError as exc:
        raise SourceError([(Mark(1, 1), f"YAML error: {exc}", "")]) from None
    finally:
        parser.dispose()
    if root is None:
        return None
    builder = _Builder()
    value = builder.build(root)
    if builder.problems:
        raise SourceError(sorted(builder.problems, key=lambda p: (p[0].line, p[0].col)))
    return value


def _syntax_problem(text: str, exc: yaml.MarkedYAMLError) -> tuple[Mark, str, str]:
    mark = exc.problem_mark or exc.context_mark
    where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
    message = f"YAML syntax error: {exc.problem or 'invalid YAML'}"
    context = exc.context_mark
    if context is not None and exc.context and context.line != (mark.line if mark else -1):
        what = exc.context.removeprefix("while parsing ").removeprefix("while scanning ")
        message += f" ({what} that starts on line {context.line + 1})"
    return where, message, _syntax_hint(text, exc, where)


def _syntax_hint(text: str, exc: yaml.MarkedYAMLError, where: Mark) -> str:
    problem = exc.problem or ""
    # A quote left open swallows the lines after it; the parser only trips later.
    lines = text.splitlines()
    start = exc.context_mark.line if exc.context_mark is not None else 0
    for number in range(start, min(where.line, len(lines))):
        line = lines[number].split(" #", 1)[0]
        if line.count('"') % 2 == 1 and not line.rstrip().endswith('"'):
            return f"the quoted string opened on line {number + 1} is not closed"
    if "expected ',' or ']'" in problem or "expected ',' or '}'" in problem:
        return "a flow list or mapping is not closed: check its brackets"
    if 0 < where.line <= len(lines) and "\t" in lines[where.line - 1]:
        return "YAML indentation must use spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "a value contains ': ' unquoted, or the indentation is off: quote the value"
    if "quoted scalar" in problem:
        return "a quoted string is not closed"
    return "fix the YAML syntax at this position"


class _Builder:
    """Turns a node tree into values; collects duplicate keys and bad tags as problems."""

    def __init__(self) -> None:
        self.problems: list[tuple[Mark, str, str]] = []
        # Aliases point at nodes already built; building each node once keeps a
        # "billion laughs" document from expanding into an exponential tree.
        self._built: dict[int, Any] = {}

    def build(self, node: Node) -> Any:
        key = id(node)
        if key in self._built:
            return self._built[key]
        if isinstance(node, ScalarNode):
            value: Any = self._scalar(node)
        elif isinstance(node, SequenceNode):
            value = YList(_mark(node))
            self._built[key] = value
            for item in node.value:
                value.append(self.build(item))
                value.marks.append(_mark(item))
        elif isinstance(node, MappingNode):
            value = YMap(_mark(node))
            self._built[key] = value
            self._fill_mapping(value, node)
        else:  # pragma: no cover - libyaml produces only the three kinds
            raise TypeError(node)
        self._built[key] = value
        return value

    def _fill_mapping(self, target: YMap, node: MappingNode) -> None:
        merged: list[tuple[str, Any, Mark, Mark]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                key_node.tag == _PLAIN and key_node.value == "<<"
            ):
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.append(
                    (_mark(key_node), "mapping keys must be plain strings", "quote the key")
                )
                continue
            name = str(key_node.value)
            if name in target:
                first = target.key_marks[name]
                self.problems.append(
                    (
                        _mark(key_node),
                        f'duplicate key "{name}" (first defined on line {first.line})',
                        "remove one of the two, or merge their contents",
                    )
                )
                continue
            target[name] = self.build(value_node)
            target.key_marks[name] = _mark(key_node)
            target.value_marks[name] = _mark(value_node)
        # Keys written in the mapping itself win over merged ones (YAML merge-key rules).
        for name, value, key_mark, value_mark in merged:
            if name not in target:
                target[name] = value
                target.key_marks[name] = key_mark
                target.value_marks[name] = value_mark

    def _merge_sources(self, node: Node) -> list[tuple[str, Any, Mark, Mark]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out: list[tuple[str, Any, Mark, Mark]] = []
        for source in sources:
            built = self.build(source)
            if not isinstance(built, YMap):
                self.problems.append((_mark(source), "a merge key (<<) needs a mapping", ""))
                continue
            for name, value in built.items():
                out.append((name, value, built.key_marks[name], built.value_marks[name]))
        return out

    def _scalar(self, node: ScalarNode) -> Any:
        text: str = node.value
        if node.tag == _PLAIN:
            return _resolve_plain(text)
        if node.tag not in _KNOWN_TAGS:
            self.problems.append(
                (_mark(node), f"unsupported YAML tag {node.tag}", "remove the tag")
            )
            return text
        if node.tag == _STR:
            return text
        value = _resolve_plain(text)
        expected = {
            "tag:yaml.org,2002:int": int,
            "tag:yaml.org,2002:float": float,
            "tag:yaml.org,2002:bool": bool,
            "tag:yaml.org,2002:null": type(None),
        }.get(node.tag)
        if expected is float and type(value) is int:
            return float(value)
        if expected is not None and type(value) is not expected:
            self.problems.append(
                (_mark(node), f"{text!r} is not a valid {node.tag.rsplit(':', 1)[-1]}", "")
            )
        return value


def _resolve_plain(text: str) -> Any:
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    if _INT10.fullmatch(text):
        return int(text)
    if _INT8.fullmatch(text):
        return int(text[2:], 8)
    if _INT16.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text
