"""Counters in Redis: shared by every mcpwall process on every host that uses the same
server and prefix.

Each reservation (or group of them) and each give-back is one server-side Lua script:
one round trip, atomic, so that two replicas can never both take the last slot. Time is
the Redis server's (``TIME``), not each host's, so that hosts whose clocks disagree
still agree on the windows. Keys expire by themselves: a calendar window's key at the
window's end, a sliding window's keys a window after their last event.

Keys, under ``mcpwall:`` and the --state-prefix: ``<key>|<window start>`` holds a
calendar counter; ``<key>|ev`` (a sorted set of events, scored by time, each member
"<id>|<amount>") and ``<key>|sum`` (their running total) hold a sliding one.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Sequence
from itertools import count
from typing import Any

import orjson

from mcpwall.policy.model import Window
from mcpwall.state.base import Check, Outcome, Refused, Request, StoreUnavailable, Token

NAMESPACE = "mcpwall:"
TIMEOUT_SECONDS = 1.0

# Shared by the scripts: the server's time (the last argument, or "" for it), a counter's
# current value (pruning the events that left a sliding window).
_COMMON = """
local now = tonumber(ARGV[#ARGV])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function window_start(seconds)
  return math.floor(now / seconds) * seconds
end

local function current(key, calendar, seconds)
  if calendar == 1 then
    local name = key .. '|' .. string.format('%d', window_start(seconds))
    return tonumber(redis.call('GET', name) or '0')
  end
  local horizon = now - seconds
  local total = tonumber(redis.call('GET', key .. '|sum') or '0')
  local gone = redis.call('ZRANGEBYSCORE', key .. '|ev', '-inf', horizon)
  if #gone > 0 then
    for _, member in ipairs(gone) do
      total = total - tonumber(string.match(member, '|(.*)$'))
    end
    if total < 0 then total = 0 end
    redis.call('ZREMRANGEBYSCORE', key .. '|ev', '-inf', horizon)
    redis.call('SET', key .. '|sum', tostring(total), 'KEEPTTL')
  end
  return total
end
"""

_RESERVE = (
    _COMMON
    + """
-- KEYS: the counters. ARGV[1]: the group as JSON: s, its distinct checks, each naming its
-- counter by its place in KEYS (i); q, the calls, each {1 to apply or 0 (a dry run),
-- then its checks by their place in s}. ARGV[2]: what this group's event ids start with.
-- ARGV[3]: the time. Every counter is read first, so that a read that fails (a key of
-- the wrong type) fails before anything is written; then each call is decided in order
-- against the values the calls before it left; then the group's additions are written.
local group = cjson.decode(ARGV[1])
local shapes, calls, prefix = group.s, group.q, ARGV[2]

local function holds(op, value, bound)
  if op == 'lt' then return value < bound end
  if op == 'lte' then return value <= bound end
  if op == 'gt' then return value > bound end
  if op == 'gte' then return value >= bound end
  if op == 'eq' then return value == tonumber(bound) end
  if op == 'neq' then return value ~= tonumber(bound) end
  if op == 'exists' then return bound == true end
  local found = false
  for _, item in ipairs(bound) do
    if tonumber(item) == value then found = true end
  end
  if op == 'in' then return found end
  return not found
end

local function fails(check, value)
  local total = value + check.a
  for _, limit in ipairs(check.l) do
    if not holds(limit[1], total, limit[2]) then return true end
  end
  return false
end

local values = {}
for _, check in ipairs(shapes) do
  if values[check.i] == nil then
    values[check.i] = current(KEYS[check.i], check.c, check.s)
  end
  if check.c == 1 then check.t = string.format('%d', window_start(check.s)) end
end

-- Per sliding counter, the amounts this group adds (their time is now): after the
-- stored events, oldest first, they tell when a refused call could pass.
local added = {}

local function retry_after(check, value)
  for _, limit in ipairs(check.l) do
    if limit[1] ~= 'lt' and limit[1] ~= 'lte' then return -1 end
  end
  if check.c == 1 then
    if fails(check, 0) then return -1 end
    return window_start(check.s) + check.s - now
  end
  local events = redis.call('ZRANGE', KEYS[check.i] .. '|ev', 0, -1, 'WITHSCORES')
  local remaining = value
  for i = 1, #events, 2 do
    remaining = remaining - tonumber(string.match(events[i], '|(.*)$'))
    if not fails(check, remaining) then
      return math.max(0, tonumber(events[i + 1]) + check.s - now)
    end
  end
  for _, amount in ipairs(added[check.i] or {}) do
    remaining = remaining - amount
    if not fails(check, remaining) then return check.s end
  end
  return -1
end

local replies = {}
local sums = {}  -- per counter: {a check of it, what the group adds, new members}
local ids = 0
for n, call in ipairs(calls) do
  local refused = nil
  for j = 2, #call do
    local check = shapes[call[j]]
    local value = values[check.i]
    if fails(check, value) then
      refused = {0, j - 2, tostring(value), tostring(retry_after(check, value))}
      break
    end
  end
  if refused ~= nil then
    replies[n] = refused
  elseif call[1] ~= 1 then
    replies[n] = {1}
  else
    local tokens = {1}
    for j = 2, #call do
      local check = shapes[call[j]]
      if check.r == 1 then
        local i = check.i
        values[i] = values[i] + check.a
        local sum = sums[i]
        if sum == nil then
          sum = {check, 0, {}}
          sums[i] = sum
        end
        sum[2] = sum[2] + check.a
        if check.c == 1 then
          tokens[#tokens + 1] = check.t
        else
          ids = ids + 1
          local member = prefix .. ids .. '|' .. check.a
          local members = sum[3]
          members[#members + 1] = now
          members[#members + 1] = member
          if added[i] == nil then added[i] = {} end
          table.insert(added[i], check.a)
          tokens[#tokens + 1] = member
        end
      end
    end
    replies[n] = tokens
  end
end

for i, sum in pairs(sums) do
  local check, key = sum[1], KEYS[i]
  if check.c == 1 then
    local name = key .. '|' .. check.t
    redis.call('INCRBYFLOAT', name, sum[2])
    redis.call('PEXPIREAT', name, math.ceil((window_start(check.s) + check.s) * 1000))
  else
    local members = sum[3]
    for first = 1, #members, 1000 do  -- within the stack unpack can use
      redis.call('ZADD', key .. '|ev', unpack(members, first, math.min(first + 999, #members)))
    end
    redis.call('INCRBYFLOAT', key .. '|sum', sum[2])
    local ttl = math.ceil(check.s * 1000)
    redis.call('PEXPIRE', key .. '|ev', ttl)
    redis.call('PEXPIRE', key .. '|sum', ttl)
  end
end
return replies
"""
)

_RELEASE = """
-- KEYS: the counters; ARGV[1]: per key {c: calendar, id: token, a: amount}, as JSON.
local tokens = cjson.decode(ARGV[1])
for i, token in ipairs(tokens) do
  local key = KEYS[i]
  if token.c == 1 then
    local name = key .. '|' .. token.id
    if redis.call('EXISTS', name) == 1 then
      if tonumber(redis.call('INCRBYFLOAT', name, -token.a)) < 0 then
        redis.call('SET', name, '0', 'KEEPTTL')
      end
    end
  elseif redis.call('ZREM', key .. '|ev', token.id) == 1 then
    if tonumber(redis.call('INCRBYFLOAT', key .. '|sum', -token.a)) < 0 then
      redis.call('SET', key .. '|sum', '0', 'KEEPTTL')
    end
  end
end
return 1
"""

_READ = (
    _COMMON
    + """
-- ARGV: calendar (0/1), the window's seconds, the time.
return tostring(current(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))
"""
)


class RedisStore:
    """``server_time``: windows follow the Redis server's clock (the default, so that
    hosts agree); otherwise the time each call passes in (tests with a clock of their
    own)."""

    def __init__(self, dsn: str, server_time: bool = True) -> None:
        self._server_time = server_time
        try:
            import redis
        except ImportError:
            raise StoreUnavailable(
                "Redis state needs the redis package: pip install 'mcpwall[redis]'"
            ) from None
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        try:
            # No connection yet: the first command opens it, and after a failure the
            # next command tries again, so a store that comes back is used again.
            self._redis = redis.Redis.from_url(
                dsn, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
        except ValueError as exc:
            raise StoreUnavailable(f"invalid Redis DSN: {exc}") from exc
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self._read = self._redis.register_script(_READ)
        # Event ids unique across every process and host that shares the server: this
        # store's origin, the group's number, the event's place in the group.
        self._groups = count()
        self._origin = uuid.uuid4().hex[:12]

    def reserve(self, checks: Sequence[Check], now: float, commit: bool = True) -> Outcome:
        return self.reserve_many(((checks, commit),), now)[0]

    def reserve_many(self, requests: Sequence[Request], now: float) -> list[Outcome]:
        # Pipelined calls repeat the same few checks: each distinct one is sent once.
        keys: dict[str, int] = {}  # counter -> its place in KEYS, from 1 as Lua counts
        shapes: dict[Any, int] = {}  # check -> its place in the group's checks, from 1
        body: list[dict[str, Any]] = []
        calls = []
        for checks, commit in requests:
            call = [int(commit)]
            for check in checks:
                try:
                    place = shapes.get(check)
                except TypeError:  # a limit with a list in it: sent as it is
                    place = None
                if place is None:
                    body.append(_shape(check, keys))
                    place = len(body)
                    with contextlib.suppress(TypeError):
                        shapes[check] = place
                call.append(place)
            calls.append(call)
        group = orjson.dumps({"s": body, "q": calls})
        args = [group, f"{self._origin}.{next(self._groups)}.", self._time(now)]
        replies = self._run(self._reserve, [NAMESPACE + key for key in keys], args)
        return [
            _outcome(checks, commit, reply)
            for (checks, commit), reply in zip(requests, replies, strict=True)
        ]

    def release(self, tokens: Sequence[Token]) -> None:
        if not tokens:
            return
        body = [{"c": int(t.window.calendar), "id": t.ident, "a": t.amount} for t in tokens]
        self._run(self._release, [NAMESPACE + t.key for t in tokens], [orjson.dumps(body)])

    def read(self, key: str, window: Window, now: float) -> float:
        args = [int(window.calendar), window.seconds, self._time(now)]
        return _number(self._run(self._read, [NAMESPACE + key], args))

    def get_value(self, key: str) -> str | None:
        value = self._call(lambda: self._redis.get(NAMESPACE + "kv|" + key))
        return None if value is None else _text(value)

    def put_value(self, key: str, value: str) -> None:
        self._call(lambda: self._redis.set(NAMESPACE + "kv|" + key, value))

    def values(self, prefix: str) -> dict[str, str]:
        head = NAMESPACE + "kv|"

        def scan() -> dict[str, str]:
            keys = list(self._redis.scan_iter(match=head + _glob_literal(prefix) + "*"))
            found = self._redis.mget(keys) if keys else []
            return {
                _text(k)[len(head) :]: _text(v)
                for k, v in zip(keys, found, strict=True)
                if v is not None
            }

        return self._call(scan)

    def _call(self, work: Any) -> Any:
        try:
            return work()
        except self._errors as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    def _time(self, now: float) -> str:
        return "" if self._server_time else repr(now)

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except self._errors as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


def _shape(check: Check, keys: dict[str, int]) -> dict[str, Any]:
    return {
        "i": keys.setdefault(check.key, len(keys) + 1),
        "c": int(check.window.calendar),
        "s": check.window.seconds,
        "a": check.amount,
        "r": int(check.reserve),
        "l": [[op.value, bound] for op, bound in check.limits],
    }


def _outcome(checks: Sequence[Check], commit: bool, reply: list[Any]) -> Outcome:
    if reply[0] == 0:
        retry = float(reply[3])
        # The script names the check that failed; the caller knows it by its rule.
        rule = checks[int(reply[1])].rule
        return Refused(rule, _number(reply[2]), None if retry < 0 else retry)
    if not commit:
        return ()
    reserving = [check for check in checks if check.reserve]
    return tuple(
        [
            Token(check.key, check.window, check.amount, _text(ident), check.refundable)
            for check, ident in zip(reserving, reply[1:], strict=True)
        ]
    )


def _glob_literal(text: str) -> str:
    """``text`` as a Redis MATCH pattern that matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float:
    number = float(_text(value))
    return int(number) if math.isfinite(number) and number.is_integer() else number
