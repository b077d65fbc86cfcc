"""Reading the policy's options beyond rules: ``pin``, ``validate_arguments`` and
``redact``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpwall.engine.operators import compile_regex
from mcpwall.policy.model import MAX_DOCUMENTS, Format, StructuredArgument
from mcpwall.policy.report import Reporter, kind, shown
from mcpwall.policy.tree import Mark, YList, YMap

if TYPE_CHECKING:
    from mcpwall.engine.redact import Pattern, Redactor

PIN_MODES = ("off", "warn", "enforce")
_REDACT_KEYS = ("detectors", "patterns")
_PATTERN_KEYS = ("name", "regex", "replacement")


def read_flag(report: Reporter, mapping: YMap, key: str, where: str) -> bool | None:
    if key not in mapping:
        return None
    value = mapping[key]
    if type(value) is not bool:
        report.error(mapping.at(key), f"{where}{key} must be true or false, got {shown(value)}")
        return None
    return value


def read_pin(report: Reporter, data: YMap) -> str:
    value = data.get("pin", "warn")
    if value not in PIN_MODES:
        report.error(
            data.at("pin"),
            f'pin must be "off", "warn" or "enforce", got "{shown(value)}"',
            "warn reports changed tools; enforce also holds them back until accepted",
        )
        return "warn"
    return str(value)


def read_redact(report: Reporter, data: YMap) -> Redactor | None:
    raw = data.get("redact")
    if raw is None:
        return None
    if not isinstance(raw, YMap):
        report.error(
            data.at("redact"),
            "redact must be a mapping with detectors and patterns",
            "redact: {detectors: [kubeconfig, bearer_tokens]}",
        )
        return None
    # Imported here: its detectors are compiled on import, and most policies redact nothing.
    from mcpwall.engine.redact import Redactor

    report.unknown_keys(raw, _REDACT_KEYS, "redact")
    detectors = _detectors(report, raw)
    patterns = _patterns(report, raw)
    if not detectors and not patterns:
        report.warn(raw.mark, "redact names no detector and no pattern: nothing is redacted")
        return None
    return Redactor(detectors, patterns)


def _detectors(report: Reporter, raw: YMap) -> tuple[str, ...]:
    from mcpwall.engine.redact import DETECTORS

    value = raw.get("detectors")
    if value is None:
        return ()
    if value == "all":
        return tuple(DETECTORS)
    if not isinstance(value, YList):
        report.error(
            raw.at("detectors"),
            "redact.detectors must be a list, or all",
            "names: " + ", ".join(DETECTORS),
        )
        return ()
    names = []
    for index, name in enumerate(value):
        if name not in DETECTORS:
            report.error(
                value.at(index),
                f'unknown redaction detector "{shown(name)}"',
                "use one of: " + ", ".join(DETECTORS),
            )
        elif name not in names:
            names.append(name)
    return tuple(names)


def _patterns(report: Reporter, raw: YMap) -> tuple[Pattern, ...]:
    value = raw.get("patterns")
    if value is None:
        return ()
    if not isinstance(value, YList):
        report.error(raw.at("patterns"), "redact.patterns must be a list of {name, regex}")
        return ()
    patterns = []
    for index, item in enumerate(value):
        where = f"redact.patterns[{index}]"
        if not isinstance(item, YMap):
            report.error(value.at(index), f"{where}: a pattern is a mapping, got {kind(item)}")
            continue
        report.unknown_keys(item, _PATTERN_KEYS, "a redaction pattern")
        pattern = _pattern(report, item, where, value.at(index))
        if pattern is not None:
            patterns.append(pattern)
    return tuple(patterns)


def _pattern(report: Reporter, item: YMap, where: str, mark: Mark) -> Pattern | None:
    from mcpwall.engine.redact import REDACTED, Pattern

    name = item.get("name")
    regex = item.get("regex")
    replacement: Any = item.get("replacement", REDACTED)
    ok = True
    if not isinstance(name, str) or not name.strip():
        report.error(
            item.at("name") if "name" in item else mark,
            f"{where}: a pattern needs a name",
            "it names the redaction in the log",
        )
        ok = False
    if not isinstance(replacement, str):
        report.error(item.at("replacement"), f"{where}: replacement must be a string")
        ok = False
    if not isinstance(regex, str) or not regex:
        report.error(
            item.at("regex") if "regex" in item else mark, f"{where}: a pattern needs a regex"
        )
        return None
    try:
        compiled = compile_regex(regex)
    except ValueError as exc:
        report.error(
            item.at("regex"),
            f'{where}: invalid regex "{regex}": {exc}',
            "the syntax is RE2, as in conditions",
        )
        return None
    return Pattern(str(name), compiled, str(replacement)) if ok else None


_ARGUMENT_KEYS = ("format", "default_namespace", "max_documents")


def read_structured(report: Reporter, entry: YMap, key: str) -> tuple[StructuredArgument, ...]:
    """A tool's ``arguments:``: the arguments to read as documents before its rules."""
    raw = entry.get("arguments")
    if raw is None:
        return ()
    where = f"tools.{key}.arguments"
    if key == "*" or not isinstance(raw, YMap):
        report.error(
            entry.at("arguments"),
            f"{where} must map argument names to a format"
            + (', under a tool, not "*"' if key == "*" else ""),
            "e.g. arguments: {resource: {format: kubernetes-manifest}}",
        )
        return ()
    declared = []
    formats = ", ".join(f.value for f in Format)
    for name, spec in raw.items():
        mark = raw.at(name)
        if not isinstance(spec, YMap) or spec.get("format") not in tuple(f.value for f in Format):
            report.error(mark, f"{where}.{name} needs a format: one of {formats}")
            continue
        report.unknown_keys(spec, _ARGUMENT_KEYS, f"{where}.{name}")
        namespace = spec.get("default_namespace")
        if namespace is not None and (type(namespace) is not str or not namespace):
            report.error(spec.at("default_namespace"), "default_namespace must be a namespace name")
            namespace = None
        limit = spec.get("max_documents", MAX_DOCUMENTS)
        if type(limit) is not int or limit < 1:
            report.error(spec.at("max_documents"), "max_documents must be a positive integer")
            limit = MAX_DOCUMENTS
        declared.append(
            StructuredArgument(name, Format(spec["format"]), mark.line, namespace, limit)
        )
    return tuple(declared)
