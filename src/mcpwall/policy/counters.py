"""Reading counters: ``rate_limit`` in both dialects and Intercept's ``state`` blocks,
their windows, scopes and ``per``, spelled out as Counter values."""

from __future__ import annotations

import math
import re

from mcpwall.engine.operators import is_number
from mcpwall.policy.model import Counter, Op, Scope, Window
from mcpwall.policy.report import Reporter, shown
from mcpwall.policy.tree import YMap

_STATE_KEYS = ("counter", "window", "increment", "increment_from", "scope", "per", "user_key")
_RATE_KEYS = ("max", "window", "scope", "per", "user_key")
_SCOPES = ("session", "global", "user")
_CALENDAR = {"minute": 60, "hour": 3600, "day": 86400}
_DURATION = re.compile(r"([0-9]+)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def read_rate_limit(report: Reporter, raw: YMap, owner: str, where: str) -> Counter | None:
    value = raw["rate_limit"]
    mark = raw.at("rate_limit")
    if isinstance(value, str):
        count_text, slash, window_text = value.partition("/")
        if not slash:
            report.error(
                mark,
                f'{where}: rate_limit must be in the format "N/window" '
                f'(e.g. "5/hour"), got "{value}"',
                "write it like 5/hour or 10/90s",
            )
            return None
        count = int(count_text) if count_text.strip().isdigit() else None
        if count is None or count <= 0:
            report.error(
                mark,
                f'{where}: rate_limit count must be a positive integer, got "{count_text}"',
                "use a positive integer, e.g. 5/hour",
            )
            count = None
        window = window_from_text(window_text.strip(), calendar=False)
        if window is None:
            report.error(
                mark,
                f'{where}: rate_limit window must be "minute", "hour", or '
                f'"day", got "{window_text}"',
                "or a duration: 90s, 15m, 1h, 1d",
            )
            return None
        if count is None:
            return None
        default_scope = Scope.GLOBAL
        options: YMap | None = None
    elif isinstance(value, YMap):
        report.unknown_keys(value, _RATE_KEYS, "rate_limit")
        count = value.get("max")
        if type(count) is not int or count <= 0:
            report.error(
                value.at("max"),
                f"{where}: rate_limit max must be a positive integer, got {shown(count)}",
                "e.g. rate_limit: {max: 10, window: 60}",
            )
            count = None
        window = read_window(report, value, "window", where, calendar_names=False)
        if count is None or window is None:
            return None
        default_scope = Scope.SESSION
        options = value
    else:
        report.error(
            mark,
            f"{where}: rate_limit must be N/window or {{max: N, window: S}}",
            "e.g. rate_limit: 5/hour, or rate_limit: {max: 10, window: 60}",
        )
        return None
    scope, per, per_path = read_scope_and_per(report, raw, options, where, default_scope)
    user_key, user_key_path = read_user_key(report, raw, options, where, scope)
    return Counter(
        owner=owner,
        name=f"_rate_{window.label}",
        window=window,
        scope=scope,
        per=per,
        per_path=per_path,
        is_rate_limit=True,
        increment=1,
        increment_from=None,
        increment_from_path=None,
        limits=((Op.LTE, count),),
        max_calls=count,
        user_key=user_key,
        user_key_path=user_key_path,
    )


def read_state_block(report: Reporter, raw: YMap, owner: str, where: str) -> Counter | None:
    block = raw["state"]
    if not isinstance(block, YMap):
        report.error(
            raw.at("state"),
            f"{where}: state must be a mapping",
            "state: {counter: name, window: day}",
        )
        return None
    report.unknown_keys(block, _STATE_KEYS, "a state block")
    ok = True
    counter = block.get("counter")
    if not isinstance(counter, str) or not counter.strip():
        report.error(
            block.at("counter"),
            f"{where}.state: counter must not be empty",
            "name the counter; conditions read it as state.<tool>.<counter>",
        )
        ok = False
    window = read_window(report, block, "window", f"{where}.state", calendar_names=True)
    increment: float = 1
    if "increment" in block:
        raw_increment = block["increment"]
        if not is_number(raw_increment) or raw_increment <= 0:
            report.error(
                block.at("increment"),
                f"{where}.state: increment must be a positive number, got {shown(raw_increment)}",
            )
            ok = False
        else:
            increment = raw_increment
    increment_from = block.get("increment_from")
    steps: tuple[str, ...] | None = None
    if increment_from is not None:
        if "increment" in block:
            report.error(
                block.key_at("increment_from"),
                f"{where}.state: use either increment or increment_from, not both",
            )
            ok = False
        if not isinstance(increment_from, str) or not increment_from.startswith("args."):
            report.error(
                block.at("increment_from"),
                f"{where}.state: increment_from must "
                f'start with "args.", got "{shown(increment_from)}"',
                "use a path like args.amount",
            )
            ok = False
        else:
            steps = tuple(increment_from[5:].split("."))
    scope, per, per_path = read_scope_and_per(report, raw, block, f"{where}.state", Scope.GLOBAL)
    user_key, user_key_path = read_user_key(report, raw, block, f"{where}.state", scope)
    if not ok or window is None:
        return None
    assert isinstance(counter, str)
    return Counter(
        owner=owner,
        name=counter,
        window=window,
        scope=scope,
        per=per,
        per_path=per_path,
        is_rate_limit=False,
        increment=increment,
        increment_from=steps,
        increment_from_path=increment_from if steps else None,
        limits=(),
        user_key=user_key,
        user_key_path=user_key_path,
    )


def read_window(
    report: Reporter, block: YMap, key: str, where: str, calendar_names: bool
) -> Window | None:
    value = block.get(key)
    window: Window | None = None
    if is_number(value) and value > 0:
        window = Window(float(value), False, f"{_seconds_text(value)}s")
    elif isinstance(value, str):
        window = window_from_text(value, calendar=calendar_names)
    if window is None:
        names = '"minute", "hour", or "day"'
        report.error(
            block.at(key),
            f'{where}: window must be {names}, got "{shown(value)}"',
            "or a number of seconds, or a duration like 90s, 15m, 1h, 1d",
        )
    return window


def read_duration(report: Reporter, block: YMap, key: str, where: str) -> float | None:
    """A positive number of seconds, or a duration like 90s, 15m, 1h, 1d."""
    value = block.get(key)
    if is_number(value) and value > 0 and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        window = window_from_text(value, calendar=False)
        if window is not None:
            return window.seconds
    report.error(
        block.at(key),
        f'{where}: {key} must be a duration, got "{shown(value)}"',
        "a number of seconds, or 90s, 15m, 1h, 1d",
    )
    return None


def read_scope_and_per(
    report: Reporter, rule: YMap, block: YMap | None, where: str, default: Scope
) -> tuple[Scope, tuple[str, ...] | None, str | None]:
    scope = default
    per: tuple[str, ...] | None = None
    per_path: str | None = None
    for key in ("scope", "per"):
        if key in rule and block is not None and key in block:
            report.error(
                rule.key_at(key), f"{where}: {key} is given twice", f"keep {key} in one place"
            )
    sources = [m for m in (block, rule) if m is not None]
    for source in sources:
        if "scope" in source:
            value = source["scope"]
            if value not in _SCOPES:
                report.error(
                    source.at("scope"),
                    f'{where}: scope must be "session", "global" or "user", got "{shown(value)}"',
                    "session: each agent session counts alone; global: shared; "
                    "user: each token subject (HTTP with --auth)",
                )
            else:
                scope = Scope(value)
        if "per" in source:
            value = source["per"]
            if (
                not isinstance(value, str)
                or not value.startswith("args.")
                or not all(value[5:].split("."))
            ):
                report.error(
                    source.at("per"),
                    f"{where}: per must be an argument path "
                    f'like args.namespace, got "{shown(value)}"',
                )
            else:
                per = tuple(value[5:].split("."))
                per_path = value
    return scope, per, per_path


def read_user_key(
    report: Reporter, rule: YMap, block: YMap | None, where: str, scope: Scope
) -> tuple[tuple[str, ...] | None, str | None]:
    """The claim that tells users apart for scope: user (``user_key: claims.email``);
    None for the token's subject."""
    sources = [m for m in (block, rule) if m is not None and "user_key" in m]
    if not sources:
        return None, None
    source = sources[0]
    if len(sources) > 1:
        report.error(
            rule.key_at("user_key"), f"{where}: user_key is given twice", "keep it in one place"
        )
    value = source["user_key"]
    if scope is not Scope.USER:
        report.error(
            source.key_at("user_key"),
            f"{where}: user_key applies to scope: user only",
            "add scope: user, or remove user_key",
        )
        return None, None
    if (
        not isinstance(value, str)
        or not value.startswith("claims.")
        or not all(value[7:].split("."))
    ):
        report.error(
            source.at("user_key"),
            f'{where}: user_key must be a claim path like claims.email, got "{shown(value)}"',
            "leave it out to count by the token's subject (sub)",
        )
        return None, None
    return tuple(value[7:].split(".")), value


def window_from_text(text: str, calendar: bool) -> Window | None:
    if text in _CALENDAR:
        return Window(float(_CALENDAR[text]), calendar, text)
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        return None
    return Window(float(seconds), False, f"{seconds}s")


def _seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
