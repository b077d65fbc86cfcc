"""Classify an MCP tool: a category, a risk, and the evidence for both.

The evidence is what the server declares about the tool: its annotations, its name, its
description and the shape of its input schema. Each of them becomes a Signal that says
what it saw and what it suggests. Annotations are hints the server chose to send, not
facts, so none of them can make a tool look safer than another signal says it is:

- the category is the most dangerous one any declared signal claims (Execute, then
  Financial, Destructive, Write, Read); the MCP spec's defaults (a tool without
  ``readOnlyHint`` may write, one without ``destructiveHint`` may destroy) decide only
  when nothing declared says anything;
- where declared signals claim different categories, or a read-only tool may hand out
  credentials, the tool is flagged: the disagreement is shown, never smoothed over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Category(StrEnum):
    READ = "Read"
    WRITE = "Write"
    EXECUTE = "Execute"
    DESTRUCTIVE = "Destructive"
    FINANCIAL = "Financial"


class Risk(StrEnum):
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"

    @property
    def level(self) -> int:
        return _RISK_ORDER.index(self)

    def raised(self) -> Risk:
        return _RISK_ORDER[min(self.level + 1, len(_RISK_ORDER) - 1)]


_RISK_ORDER = (Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL)
# From least to most dangerous: when signals disagree, the later one is believed.
CAUTION_ORDER = (
    Category.READ,
    Category.WRITE,
    Category.DESTRUCTIVE,
    Category.FINANCIAL,
    Category.EXECUTE,
)
_BASE_RISK = {
    Category.READ: Risk.LOW,
    Category.WRITE: Risk.MEDIUM,
    Category.DESTRUCTIVE: Risk.HIGH,
    Category.FINANCIAL: Risk.HIGH,
    Category.EXECUTE: Risk.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class ToolFacts:
    """What a server declares about one tool, as tools/list sends it."""

    name: str
    description: str | None = None  # None: not known (the catalogue keeps no copy)
    annotations: Mapping[str, Any] | None = None
    parameters: Mapping[str, Mapping[str, Any]] | None = None  # name -> JSON schema

    @classmethod
    def from_wire(cls, tool: Mapping[str, Any]) -> ToolFacts:
        schema = tool.get("inputSchema") or {}
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        annotations = tool.get("annotations")
        return cls(
            name=str(tool["name"]),
            description=str(tool.get("description") or ""),
            annotations=annotations if isinstance(annotations, Mapping) else None,
            parameters=properties if isinstance(properties, Mapping) else {},
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence: where it comes from, what was seen, what it suggests."""

    family: str  # annotations, name, description, input schema: one voice each
    source: str
    observed: str
    meaning: str
    claim: Category | None = None
    declared: bool = True  # False for a spec default: the server said nothing
    raises_risk: str | None = None  # why this signal makes the tool riskier
    credentials: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "source": self.source,
            "observed": self.observed,
            "meaning": self.meaning,
            "claims": self.claim.value if self.claim else None,
            "declared": self.declared,
            "raises_risk": self.raises_risk,
        }


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category
    risk: Risk
    signals: tuple[Signal, ...]
    flags: tuple[str, ...]  # disagreements between signals, for a human to review
    reasons: tuple[str, ...]  # how the category and the risk were reached

    def as_json(self) -> dict[str, Any]:
        return {
            "category": self.category.value,
            "risk": self.risk.value,
            "flags": list(self.flags),
            "reasons": list(self.reasons),
            "signals": [signal.as_json() for signal in self.signals],
        }


def classify(tool: ToolFacts) -> Classification:
    signals = [
        *_annotation_signals(tool.annotations),
        *_name_signals(tool.name),
        *_description_signals(tool.description),
        *_parameter_signals(tool.parameters or {}),
    ]
    category, reasons = _category(signals)
    flags = _flags(signals, category)
    risk = _BASE_RISK[category]
    reasons.append(f"{category} tools start at {risk} risk")
    for signal in signals:
        if signal.raises_risk is None:
            continue
        if signal.credentials and category is Category.READ:
            raised = max(risk, Risk.HIGH, key=lambda r: r.level)
        else:
            raised = risk.raised()
        if raised is not risk:
            reasons.append(f"{signal.raises_risk}: {risk} -> {raised}")
            risk = raised
    if flags and risk is Risk.LOW:
        risk = Risk.MEDIUM
        reasons.append("its signals disagree, so it is not Low until someone has looked: Medium")
    return Classification(category, risk, tuple(signals), tuple(flags), tuple(reasons))


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


# -- annotations ------------------------------------------------------------------------

_ANNOTATIONS = "annotations"
_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def _annotation_signals(annotations: Mapping[str, Any] | None) -> list[Signal]:
    hints = annotations or {}
    if not any(key in hints for key in _HINTS):
        return [
            Signal(
                _ANNOTATIONS,
                "annotations",
                "none declared",
                "under the MCP spec's defaults a client must assume the tool may change and "
                "destroy things, and reach outside systems",
                Category.DESTRUCTIVE,
                declared=False,
            )
        ]
    read_only = hints.get("readOnlyHint")
    signals = [
        Signal(
            _ANNOTATIONS,
            "readOnlyHint",
            _shown(read_only, "false"),
            "the server says it only reads"
            if read_only is True
            else "not read-only: it may change things",
            Category.READ if read_only is True else Category.WRITE,
            declared=read_only is not None,
        )
    ]
    # The other hints only mean something for a tool that is not read-only.
    if read_only is not True:
        destructive = hints.get("destructiveHint")
        signals.append(
            Signal(
                _ANNOTATIONS,
                "destructiveHint",
                _shown(destructive, "true"),
                "it only adds, never deletes or overwrites"
                if destructive is False
                else "it may delete or overwrite",
                Category.WRITE if destructive is False else Category.DESTRUCTIVE,
                declared=destructive is not None,
            )
        )
        idempotent = hints.get("idempotentHint")
        signals.append(
            Signal(
                _ANNOTATIONS,
                "idempotentHint",
                _shown(idempotent, "false"),
                "repeating a call has no further effect"
                if idempotent is True
                else "not idempotent: a retried call acts again",
                declared=idempotent is not None,
            )
        )
    open_world = hints.get("openWorldHint")
    signals.append(
        Signal(
            _ANNOTATIONS,
            "openWorldHint",
            _shown(open_world, "true"),
            "works only within the server's own domain"
            if open_world is False
            else "reaches systems outside the server; what it returns is outside content",
            declared=open_world is not None,
        )
    )
    return signals


def _shown(value: Any, default: str) -> str:
    if value is None:
        return f"absent (the spec's default: {default})"
    return "true" if value is True else "false" if value is False else repr(value)


# -- the name ---------------------------------------------------------------------------

# Verbs by what they do. Money words are split: verbs that move money (pay, refund) say
# Financial anywhere; nouns (invoice, payment) only next to a verb that acts, so that
# list_invoices stays a Read and create_payment becomes Financial.
_NAME_VERBS: dict[Category, frozenset[str]] = {
    Category.EXECUTE: _vocabulary(
        "exec execute run eval shell bash sh cmd command script invoke spawn"
    ),
    Category.FINANCIAL: _vocabulary(
        "pay charge refund purchase buy checkout withdraw deposit payout"
    ),
    Category.DESTRUCTIVE: _vocabulary(
        "delete del remove rm destroy drop purge truncate uninstall terminate kill wipe "
        "erase revoke evict drain prune reset cancel clear unpublish"
    ),
    Category.WRITE: _vocabulary(
        "create add new insert update upsert set put patch edit modify write save "
        "upload install apply deploy scale clone copy move rename start stop restart "
        "pause resume unpause enable disable send post publish submit assign merge push "
        "import sync approve tag label annotate transfer issue capture"
    ),
    Category.READ: _vocabulary(
        "get list read describe show view search find query fetch lookup top log logs "
        "stats status summary info inspect watch count export download diff explain "
        "troubleshoot diagnose health metrics trace traces"
    ),
}
_MONEY_NOUNS = _vocabulary(
    "payment payments payouts charges refunds invoice invoices billing funds money "
    "transaction transactions"
)
_CREDENTIAL_WORDS = _vocabulary(
    "secret secrets token tokens credential credentials password passwords apikey kubeconfig"
)


def _words(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def _verb_claim(
    words: list[str], verbs: dict[Category, frozenset[str]]
) -> tuple[Category, str] | None:
    """The most cautious category the words name, with the word that named it."""
    found = [
        (category, word)
        for category in reversed(CAUTION_ORDER)
        for word in words
        if word in verbs[category]
    ]
    acting = next((word for category, word in found if category is not Category.READ), None)
    money = next((word for word in words if word in _MONEY_NOUNS), None)
    if money is not None and acting is not None:
        found.insert(0, (Category.FINANCIAL, f"{acting} {money}"))
    return found[0] if found else None


def _name_signals(name: str) -> list[Signal]:
    words = _words(name)
    signals: list[Signal] = []
    claim = _verb_claim(words, _NAME_VERBS)
    if claim is not None:
        category, word = claim
        signals.append(Signal("name", "name", f'"{word}"', f"the name says {category}", category))
    secret = next((word for word in words if word in _CREDENTIAL_WORDS), None)
    if secret is not None:
        signals.append(
            Signal(
                "name",
                "name",
                f'"{secret}"',
                "it handles credentials",
                raises_risk="its name speaks of credentials",
                credentials=True,
            )
        )
    return signals


# -- the description --------------------------------------------------------------------

# Verbs as descriptions conjugate them; only the first sentence is read for them.
_DESCRIPTION_VERBS: dict[Category, frozenset[str]] = {
    Category.EXECUTE: _vocabulary("execute executes executing exec eval evaluates"),
    Category.FINANCIAL: _vocabulary(
        "pay pays charge charges refund refunds purchase purchases withdraw withdraws"
    ),
    Category.DESTRUCTIVE: _vocabulary(
        "delete deletes deleting remove removes removing destroy destroys drop drops "
        "uninstall uninstalls purge purges truncate truncates terminate terminates kill "
        "kills wipe wipes erase erases revoke revokes evict evicts drain drains cancel "
        "cancels cancelling canceling"
    ),
    Category.WRITE: _vocabulary(
        "create creates creating update updates updating modify modifies patch patches "
        "install installs deploy deploys apply applies write writes upload uploads "
        "clone clones scale scales restart restarts restarting start starts stop stops "
        "send sends insert inserts add adds edit edits rename renames move moves "
        "publish publishes toggle toggles compress compresses"
    ),
    Category.READ: _vocabulary(
        "get gets list lists read reads retrieve retrieves return returns fetch fetches "
        "show shows describe describes view views search searches find finds query "
        "queries export exports diagnose diagnoses inspect inspects echo echoes"
    ),
}
_EXECUTE_PHRASES = re.compile(
    r"\b(run|runs|running|execute|executes)\s+(an?\s+|any\s+|the\s+)?(arbitrary\s+)?"
    r"(shell\s+)?(commands?|scripts?|code|sql)\b|\bshell access\b",
    re.IGNORECASE,
)
# "returns the API tokens", not "read from the kubeconfig file".
_RETURNS_CREDENTIALS = re.compile(
    r"\b(get|gets|return|returns|show|shows|view|views|print|prints|dump|dumps|export|"
    r"exports|read|reads|list|lists|output|outputs)\b[^.]{0,60}?(?<!from )(?<!from the )"
    r"\b(credentials?|secrets?|tokens?|passwords?|api[ _-]?keys?|private keys?|kubeconfig|"
    r"environment variables)\b",
    re.IGNORECASE,
)


def _description_signals(description: str | None) -> list[Signal]:
    if description is None:
        return []
    if not description.strip():
        return [Signal("description", "description", "none", "nothing to read")]
    first = re.split(r"(?<=[.!?])\s|\n", description.strip(), maxsplit=1)[0]
    signals: list[Signal] = []
    execute = _EXECUTE_PHRASES.search(description)
    claim = (
        (Category.EXECUTE, execute.group(0))
        if execute is not None
        else _verb_claim(_words(first), _DESCRIPTION_VERBS)
    )
    if claim is not None:
        category, word = claim
        signals.append(
            Signal(
                "description",
                "description",
                f'"{word}"',
                f"the description says {category}",
                category,
            )
        )
    else:
        signals.append(Signal("description", "description", f'"{_clip(first)}"', "no verb we know"))
    credentials = _RETURNS_CREDENTIALS.search(description)
    if credentials is not None:
        signals.append(
            Signal(
                "description",
                "description",
                f'"{_clip(credentials.group(0))}"',
                "it may hand out credentials",
                raises_risk="its description says it may return credentials",
                credentials=True,
            )
        )
    return signals


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the input schema -------------------------------------------------------------------

_SCHEMA = "input schema"

_EXECUTE_PARAMETERS = _vocabulary(
    "command commands cmd script code sql shell expression eval statement"
)
_MONEY_PARAMETERS = _vocabulary("amount currency price cost")
_REACH_PARAMETERS = {
    "url": "an address",
    "uri": "an address",
    "endpoint": "an address",
    "webhook": "an address",
    "host": "an address",
    "path": "a file path",
    "file": "a file path",
    "filename": "a file path",
    "filepath": "a file path",
    "dir": "a file path",
    "directory": "a file path",
    "folder": "a file path",
}


def _parameter_signals(parameters: Mapping[str, Mapping[str, Any]]) -> list[Signal]:
    signals: list[Signal] = []
    for name, schema in parameters.items():
        words = _words(name)
        kind = _schema_type(schema)
        if _any(words, _EXECUTE_PARAMETERS) and kind in ("string", "array", "any"):
            signals.append(
                Signal(
                    _SCHEMA,
                    f"parameter {name}",
                    f"a free-form {kind}",
                    "the caller says what to run",
                    Category.EXECUTE,
                )
            )
        elif _any(words, _MONEY_PARAMETERS):
            signals.append(
                Signal(_SCHEMA, f"parameter {name}", kind, "it moves money", Category.FINANCIAL)
            )
        reach = next((_REACH_PARAMETERS[word] for word in words if word in _REACH_PARAMETERS), None)
        if reach is not None and kind in ("string", "any"):
            signals.append(
                Signal(
                    _SCHEMA,
                    f"parameter {name}",
                    f"a free-form {kind}",
                    f"the caller chooses {reach} it reaches",
                    raises_risk=f"{name} lets the caller choose {reach}",
                )
            )
        if kind == "object" and not schema.get("properties"):
            signals.append(
                Signal(
                    _SCHEMA,
                    f"parameter {name}",
                    "a free-form object",
                    "its contents have no schema, so no policy rule can check them",
                )
            )
    return signals


def _any(words: Iterable[str], vocabulary: frozenset[str]) -> bool:
    return any(word in vocabulary for word in words)


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else "any"


# -- the verdict ------------------------------------------------------------------------


def _claims(signals: list[Signal]) -> dict[str, Signal]:
    """Each family's most cautious claim: the annotations, the name, the description and
    the input schema each speak with one voice. A family speaks if it declared anything;
    then the spec's defaults fill its gaps (readOnlyHint false alone means destructive)."""
    speaking = {signal.family for signal in signals if signal.declared}
    voices: dict[str, Signal] = {}
    for signal in signals:
        if signal.claim is None or signal.family not in speaking:
            continue
        current = voices.get(signal.family)
        if current is None or _caution(signal) > _caution(current):
            voices[signal.family] = signal
    return voices


def _caution(signal: Signal) -> int:
    assert signal.claim is not None
    return CAUTION_ORDER.index(signal.claim)


def _category(signals: list[Signal]) -> tuple[Category, list[str]]:
    voices = _claims(signals)
    if voices:
        chosen = max(voices.values(), key=_caution)
        assert chosen.claim is not None
        if len({voice.claim for voice in voices.values()}) == 1:
            names = [_voice(family) for family in voices]
            said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            verb = "say" if len(names) > 1 or names[0] == _voice(_ANNOTATIONS) else "says"
            return chosen.claim, [f"{said} {verb} {chosen.claim}"]
        return chosen.claim, [f"the most cautious claim wins: {_said(chosen)} {chosen.claim}"]
    # Nothing was declared: the annotations' "none declared" signal carries the defaults.
    chosen = max((s for s in signals if s.claim is not None), key=_caution)
    assert chosen.claim is not None
    return chosen.claim, [
        f"nothing declared says what it does; the spec's defaults say {chosen.claim}"
    ]


def _said(signal: Signal) -> str:
    """A voice as a reason quotes it, e.g. the annotations (destructiveHint: true) say."""
    seen = (
        signal.observed if signal.source == signal.family else f"{signal.source}: {signal.observed}"
    )
    verb = "say" if signal.family == _ANNOTATIONS else "says"
    return f"{_voice(signal.family)} ({seen}) {verb}"


def _voice(family: str) -> str:
    return "the annotations" if family == _ANNOTATIONS else f"the {family}"


def _flags(signals: list[Signal], category: Category) -> list[str]:
    voices = _claims(signals)
    flags = []
    if len({voice.claim for voice in voices.values()}) > 1:
        chosen = next(v for v in voices.values() if v.claim is category)
        for voice in voices.values():
            if voice.claim is not category:
                flags.append(f"{_said(voice)} {voice.claim}, but {_said(chosen)} {category}")
    if category is Category.READ:
        for signal in signals:
            if signal.credentials:
                flags.append(f"a read, yet {signal.meaning} ({signal.source}: {signal.observed})")
    return flags
