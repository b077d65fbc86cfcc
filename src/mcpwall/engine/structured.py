"""Arguments that are documents: read the way the server reads them, before any rule.

A policy declares that an argument is text with a structure (``arguments:`` next to a
tool's ``rules:``). mcpwall parses it once per call and the conditions see the parsed
value, so that ``args.resource[*].kind`` is the kind the server will apply, however the
manifest spells it: escapes, block scalars, tags, anchors, flow style, comments.

What cannot be read exactly one way is refused, never guessed: text that does not
parse, duplicate keys (also keys a Go reader folds together), merge keys, scalars that
YAML 1.1 (Go's yaml.v2, under sigs.k8s.io/yaml) and YAML 1.2 resolve apart (``yes``,
``on``, ``0777``, ``1_000``, ``12:30``, timestamps), non-string keys, tags other than
the standard ones, too many documents or too large a document (an alias bomb).

Formats:
- ``kubernetes-manifest``: the server's reading of ``resources_create_or_update``: the
  text is cut at every line that is ``---`` (its regex ``\\r?\\n---\\r?\\n``), and every
  YAML document of every piece is read (the server applies the first of each piece; a
  superset is judged). A JSON piece is read as strict JSON. ``kind`` is matched without
  regard to case (the API server resolves ``secret`` to Secret); a document without
  ``metadata.namespace`` gets the namespace the server will use (``default_namespace``)
  or none, and conditions on it fail closed.
- ``yaml``: every document, as a list.
- ``json``: one JSON value, read strictly.
- ``argv``: a command as a list of strings; a string is split like a POSIX shell would
  split it, and refused when a shell would do more than split it (expansions,
  operators, redirections).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from mcpwall import mcp
from mcpwall.policy.model import Format, StructuredArgument

MAX_NODES = 100_000  # values in one argument, aliases expanded


class Unreadable(ValueError):
    """The argument cannot be read exactly one way."""


def read_arguments(
    declared: tuple[StructuredArgument, ...], args: dict[str, Any]
) -> dict[str, Any] | str:
    """The arguments with each declared one parsed; or why the call is refused. An
    argument left out stays out (its conditions fail closed)."""
    parsed = dict(args)
    for declaration in declared:
        if declaration.name not in args:
            continue
        try:
            parsed[declaration.name] = read(declaration, args[declaration.name])
        except Unreadable as exc:
            return (
                f'Argument "{declaration.name}" ({declaration.format.value}) cannot be read '
                f"exactly one way: {exc}"
            )
    return parsed


def read(declaration: StructuredArgument, value: Any) -> Any:
    kind = declaration.format
    if kind is Format.ARGV:
        return _argv(value)
    if type(value) is not str:
        raise Unreadable(f"expected text, got {_type_name(value)}")
    if kind is Format.JSON:
        return _json(value)
    if kind is Format.YAML:
        return _documents(value, declaration.max_documents)
    documents = []
    for piece in _SERVER_SPLIT.split(value):
        if piece.lstrip().startswith("{"):  # the server's decoder reads this as JSON
            documents.append(_json(piece))
        else:
            documents.extend(_documents(piece, declaration.max_documents))
        if len(documents) > declaration.max_documents:
            raise Unreadable(f"more than {declaration.max_documents} documents")
    return [_as_applied(document, declaration.default_namespace) for document in documents]


# The server's own cut between documents (kubernetes-mcp-server's resources_create_or_update).
_SERVER_SPLIT = re.compile(r"\r?\n---\r?\n")


def _as_applied(document: Any, default_namespace: str | None) -> Any:
    """A manifest document as the API server will take it: ``kind`` in lower case (the
    policy's kinds are lowered too), the namespace filled in the way the server fills
    it. A List's items are judged as documents of their own."""
    if type(document) is not dict:
        return document
    out = dict(document)
    kind = out.get("kind")
    if type(kind) is str:
        out["kind"] = kind.lower()
    metadata = out.get("metadata")
    # The server puts an object without a namespace in the context's namespace only
    # when it resolves the kind as a namespaced one: written as the API names it (an
    # all-lower-case kind goes to a cluster-wide path), with an apiVersion. Kinds this
    # table does not know get no namespace, and conditions on it fail closed.
    fills = type(kind) is str and kind in _NAMESPACED and type(out.get("apiVersion")) is str
    if fills and default_namespace is not None and (metadata is None or type(metadata) is dict):
        metadata = dict(metadata or {})
        if metadata.get("namespace") in (None, ""):
            metadata["namespace"] = default_namespace
        out["metadata"] = metadata
    items = out.get("items")
    if type(items) is list:
        out["items"] = [_as_applied(item, default_namespace) for item in items]
    return out


_NAMESPACED = frozenset(
    "Pod ConfigMap Secret Service ServiceAccount Endpoints PersistentVolumeClaim "
    "LimitRange ResourceQuota Event PodTemplate ReplicationController Deployment "
    "StatefulSet DaemonSet ReplicaSet ControllerRevision Job CronJob Ingress "
    "NetworkPolicy Role RoleBinding HorizontalPodAutoscaler PodDisruptionBudget Lease "
    "EndpointSlice VirtualMachine VirtualMachineInstance VirtualMachineClone "
    "VirtualMachineSnapshot VirtualMachineRestore VirtualMachineExport DataVolume".split()
)


def _json(text: str) -> Any:
    try:
        return mcp.decode_strict(text.strip().encode())
    except mcp.Malformed as exc:
        raise Unreadable(f"not strict JSON: {exc}") from None


# -- YAML ---------------------------------------------------------------------------------


_PLAIN = "tag:mcpwall,plain"  # a plain scalar with no tag: resolved here, not by PyYAML
_STANDARD = "tag:yaml.org,2002:"


class _Loader(yaml.SafeLoader):
    """Composes nodes only; every plain scalar keeps the marker tag, so that this
    module resolves it (and an explicit tag stays explicit)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _documents(text: str, limit: int) -> list[Any]:
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise Unreadable(f"not YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise Unreadable("nested too deep") from None
    documents = [node for node in nodes if node is not None]
    if len(documents) > limit:
        raise Unreadable(f"more than {limit} documents")
    budget = [MAX_NODES]
    try:
        return [_value(node, budget, set()) for node in documents]
    except RecursionError:
        raise Unreadable("nested too deep") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        where = exc.problem_mark
        line = f" at line {where.line + 1}" if where is not None else ""
        return f"{exc.problem or exc.context}{line}"
    return str(exc)[:120]


def _value(node: Any, budget: list[int], inside: set[int]) -> Any:
    """The JSON value of a node; ``inside``: the collections being read, so that an
    alias of one of them (a cycle) is refused."""
    budget[0] -= 1
    if budget[0] < 0:
        raise Unreadable(f"more than {MAX_NODES} values (aliases expanded)")
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if id(node) in inside:
        raise Unreadable("an alias inside what it names")
    inside.add(id(node))
    try:
        return _collection(node, tag, budget, inside)
    finally:
        inside.discard(id(node))


def _collection(node: Any, tag: str, budget: list[int], inside: set[int]) -> Any:
    if isinstance(node, yaml.SequenceNode):
        if tag != _STANDARD + "seq":
            raise Unreadable(f"tag {tag} on a sequence")
        return [_value(item, budget, inside) for item in node.value]
    if tag != _STANDARD + "map":
        raise Unreadable(f"tag {tag} on a mapping")
    out: dict[str, Any] = {}
    folded: dict[str, str] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STANDARD + "merge":
            raise Unreadable("a merge key (<<)")
        if key_node.tag == _PLAIN and key_node.value == "<<":
            raise Unreadable("a merge key (<<), which YAML 1.1 and 1.2 read apart")
        key = _value(key_node, budget, inside)
        if type(key) is not str:
            raise Unreadable(f"a key that is not a string ({_type_name(key)})")
        if key in out:
            raise Unreadable(f'the key "{key}" twice in one mapping')
        same = folded.setdefault(mcp.go_key(key), key)
        if same != key:
            raise Unreadable(f'keys "{same}" and "{key}", which a Go reader takes for one')
        out[key] = _value(value_node, budget, inside)
    return out


_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
# Booleans to YAML 1.1 (and Go's yaml.v2) only; strings to YAML 1.2.
_YAML11_BOOLS = frozenset("y Y yes Yes YES n N no No NO on On ON off Off OFF".split())
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Numbers, special floats and timestamps that Go's yaml.v2 (YAML 1.1, integers read by
# strconv with base 0), YAML 1.2 and JSON read apart: leading zeros (octal to one,
# decimal to another), 0o/0x/0b, underscores, base 60, .inf and .nan, dates.
_AMBIGUOUS = re.compile(
    r"[-+]?(0[0-9_]+(\.[0-9]*)?|0[oOxXbB][0-9a-fA-F_]*|[0-9][0-9_]*_[0-9_.]*"
    r"|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|\.(inf|Inf|INF))"
    r"|\.(nan|NaN|NAN)"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"
)


def _scalar(node: Any) -> Any:
    text = node.value
    tag = node.tag
    if tag == _PLAIN:
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if text in _YAML11_BOOLS:
            raise Unreadable(f'"{text}", a boolean to YAML 1.1 and a string to YAML 1.2')
        if _INT.fullmatch(text):
            return int(text)
        if _AMBIGUOUS.fullmatch(text):
            raise Unreadable(f'"{text}", which YAML 1.1, YAML 1.2 and JSON read apart')
        if _FLOAT.fullmatch(text):
            return float(text)
        return text
    if tag == _STANDARD + "str":
        return text
    raise Unreadable(f"the tag {tag}")


# -- commands -----------------------------------------------------------------------------


_SHELL_MORE = re.compile(r"[$`;&|<>(){}*?\[\]~!#\\\n]")


def _argv(value: Any) -> list[str]:
    if type(value) is list:
        if not all(type(part) is str for part in value):
            raise Unreadable("a command must be a list of strings")
        return value
    if type(value) is not str:
        raise Unreadable(f"expected a command, got {_type_name(value)}")
    if _SHELL_MORE.search(value):
        raise Unreadable("shell syntax beyond words and quotes (expansions, operators, globs)")
    try:
        return shlex.split(value, posix=True)
    except ValueError as exc:
        raise Unreadable(f"unbalanced quoting: {exc}") from None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), "a number" if type(value) in (int, float) else "null"
    )
