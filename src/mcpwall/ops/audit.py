"""The audit log: one JSONL file per mcpwall instance, one line per event.

Events: ``startup`` (version, policy path and hash), ``decision`` (one per judged call:
time, instance, session, the caller's token subject under --auth, tool, allowed or
denied, rule, reason, SHA-256 of the canonical arguments, mcpwall's own latency, the
upstream error if any), ``reload``, ``heartbeat``
(every minute, so that ``mcpwall status`` can tell a live instance from a dead one) and
``shutdown``. A denied call is written when it is denied; a forwarded one when it ends,
so that its record holds the server's error, if any.

Writing never blocks the hot path, nor lengthens a call: a decision is only noted
(its time and its record) when it happens; every FLUSH_SECONDS, or every FLUSH_RECORDS
decisions, the noted ones are encoded together on the event loop, between calls, and
handed to a writer thread, the only one that touches the disk. Encoding a batch at once
costs less than a record at a time in the middle of each call, where the caches are
cold from the wake-up. Each batch is one ``write`` of whole lines to a file opened with
O_APPEND, so a ``kill -9`` can cost the last batch but never leaves half a line; every
noted record is written at a normal exit. Arguments larger than HOLD_BYTES are hashed
as soon as the call is on its way to the server (while the server reads it), so that a
large argument is not held until the batch; beyond DIGEST_AWAY_BYTES, by the writer
thread, since SHA-256 lets go of the GIL: the loop goes on relaying meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from mcpwall import __version__
from mcpwall.proxy.record import CallRecord

log = logging.getLogger("mcpwall")

FLUSH_SECONDS = 0.1
FLUSH_RECORDS = 1024  # bounds the records (and their arguments) held between batches
HOLD_BYTES = 4096  # a call's message up to this size keeps its arguments for the batch
DIGEST_AWAY_BYTES = 256 * 1024  # a call's message beyond this is hashed off the loop
HEARTBEAT_SECONDS = 60.0
DEFAULT_RETENTION_DAYS = 7.0

# Argument names and values that look like secrets, for --log-args.
_SECRET_NAME = (
    r"(?i)(pass(word|phrase)?|secret|token|api[-_]?key|auth|credential|private[-_]?key"
    r"|cookie|session[-_]?id|access[-_]?key)"
)
_SECRET_VALUE = (
    r"(?i)(bearer\s+[a-z0-9._~+/=-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b|\beyJ[a-z0-9_-]{8,}\.[a-z0-9_-]{8,}\.[a-z0-9_-]*"
    r"|\b(gh[pousr]_[a-z0-9]{30,}|sk_(live|test)_[a-z0-9]{16,}|xox[abpr]-[a-z0-9-]{10,}))"
)
REDACTED = "[redacted]"


def default_events_dir() -> Path:
    return Path.home() / ".mcpwall" / "events"


def args_digest(args: Any) -> str:
    """SHA-256 of the arguments as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(orjson.dumps(args, option=orjson.OPT_SORT_KEYS)).hexdigest()


@functools.cache
def _secrets() -> tuple[re.Pattern[str], re.Pattern[str]]:
    # Compiled when first needed: only --log-args reads them, and they cost 1 ms of
    # every start.
    return re.compile(_SECRET_NAME), re.compile(_SECRET_VALUE)


def redact(value: Any) -> Any:
    """The value with anything that looks like a secret replaced."""
    secret_name, secret_value = _secrets()
    if isinstance(value, dict):
        return {
            key: REDACTED if secret_name.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and secret_value.search(value):
        return REDACTED
    return value


class AuditLog:
    """The audit log of one instance; an Observer of every judged call."""

    def __init__(
        self,
        directory: Path,
        log_args: bool = False,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.instance = uuid.uuid4().hex[:16]
        self.path = directory / f"{self.instance}.jsonl"
        self.log_args = log_args
        self.decisions = 0
        self.denials = 0
        # Encoded lines, copied into one buffer: a bytes object from orjson keeps a
        # buffer of several KB, far more than its line, for as long as it is held.
        self._lines = bytearray()
        # Decisions noted, not yet encoded: (time in ns, session, record, error, args).
        self._noted: list[tuple[int, str, CallRecord, str | None, Any]] = []
        # Lines to write; or a call whose arguments the thread is to hash.
        self._queue: queue.SimpleQueue[bytes | tuple[CallRecord, Any] | None] = queue.SimpleQueue()
        self._timer: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        directory.mkdir(parents=True, exist_ok=True)
        prune(directory, retention_days)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._writer = threading.Thread(
            target=self._write_forever, name="mcpwall-audit", daemon=True
        )
        self._writer.start()

    # -- the calls ----------------------------------------------------------------------

    def decided(self, session: str, record: CallRecord, size: int) -> None:
        if size > HOLD_BYTES:
            try:
                # Once the call is on its way: the server works on it meanwhile.
                loop = asyncio.get_running_loop() if record.verdict.allowed else None
            except RuntimeError:
                loop = None
            if loop is not None and size > DIGEST_AWAY_BYTES:
                # Hashed by the writer thread while the server works on the call:
                # hashlib lets go of the GIL, so the relay goes on meanwhile.
                self._queue.put((record, record.args))
            elif loop is not None:
                loop.call_soon(self._digest, record)
            else:
                record.args_digest = args_digest(record.args)
        if not record.verdict.allowed:
            self._note(session, record, None)

    def _digest(self, record: CallRecord) -> None:
        if record.args_digest is None and record.args is not None:
            record.args_digest = args_digest(record.args)

    def answered(self, session: str, record: CallRecord, error: str | None) -> None:
        self._note(session, record, error)

    def _note(self, session: str, record: CallRecord, error: str | None) -> None:
        self.decisions += 1
        if not record.verdict.allowed:
            self.denials += 1
        # The relay lets the record's arguments go once the call has ended.
        args = record.args if record.args_digest is None or self.log_args else None
        self._noted.append((time.time_ns(), session, record, error, args))
        if len(self._noted) >= FLUSH_RECORDS:
            self._encode()
        elif self._timer is None:
            self._start_timer()

    def _encode(self) -> None:
        noted, self._noted = self._noted, []
        for ns, session, record, error, args in noted:
            self._lines += self._decision(ns, session, record, error, args)

    def _decision(
        self, ns: int, session: str, record: CallRecord, error: str | None, args: Any
    ) -> bytes:
        verdict = record.verdict  # its fields read directly: this runs for every call
        if not verdict.allowed:
            decision = "denied"
        elif record.approval_outcome == "asked":  # answered with input_required
            decision = "approval asked"
        else:
            decision = "monitored" if verdict.monitored else "allowed"
        event: dict[str, Any] = {
            "ts": _timestamp(ns),
            "type": "decision",
            "instance": self.instance,
            "session": session,
            "request_id": record.request_id,
            "tool": verdict.tool,
            "decision": decision,
            "rule": verdict.rule,
            "reason": verdict.reason,
            "retry_after_s": verdict.retry_after_s,
            "args_sha256": record.args_digest or args_digest(args),
            "latency_us": int(record.latency_us * 10 + 0.5) / 10,  # round() is slower
            "upstream_error": error,
            "policy_sha256": record.policy_digest,
        }
        if record.subject is not None:
            event["subject"] = record.subject
        if verdict.approval is not None:
            event["approval"] = record.approval_outcome
        if record.redacted:
            event["redacted"] = record.redacted
        if self.log_args:
            event["args"] = redact(args)
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)

    def noted(self, session: str, kind: str, fields: dict[str, Any]) -> None:
        self._emit(kind, {"session": session, **fields})

    # -- the instance -------------------------------------------------------------------

    def startup(self, **fields: Any) -> None:
        self._emit("startup", {"version": __version__, "pid": os.getpid(), **fields})
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def beat() -> None:
            self._emit("heartbeat", {"decisions": self.decisions, "denials": self.denials})
            self._heartbeat = loop.call_later(HEARTBEAT_SECONDS, beat)

        self._heartbeat = loop.call_later(HEARTBEAT_SECONDS, beat)

    def reloaded(self, ok: bool, policy_digest: str, errors: list[str]) -> None:
        self._emit("reload", {"ok": ok, "policy_sha256": policy_digest, "errors": errors})

    def shutdown(self, exit_code: int) -> None:
        self._emit(
            "shutdown",
            {"exit_code": exit_code, "decisions": self.decisions, "denials": self.denials},
        )

    # -- writing ------------------------------------------------------------------------

    def _emit(self, kind: str, fields: dict[str, Any]) -> None:
        self._encode()  # the decisions before it come first
        event = {"ts": _timestamp(time.time_ns()), "type": kind, "instance": self.instance}
        self._lines += orjson.dumps({**event, **fields}, option=orjson.OPT_APPEND_NEWLINE)
        if self._timer is None:
            self._start_timer()

    def _start_timer(self) -> None:
        try:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
        except RuntimeError:  # no event loop: write at once
            self.flush()

    def flush(self) -> None:
        self._timer = None
        self._encode()
        if self._lines:
            self._queue.put(bytes(self._lines))
            self._lines.clear()

    def close(self) -> None:
        """Write everything still held and stop the writer."""
        for timer in (self._timer, self._heartbeat):
            if timer is not None:
                timer.cancel()
        self.flush()
        self._queue.put(None)
        self._writer.join(timeout=5)
        os.close(self._fd)

    def _write_forever(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if isinstance(data, tuple):
                record, args = data
                if record.args_digest is None:
                    record.args_digest = args_digest(args)
                continue
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                log.error("cannot write the audit log %s: %s", self.path, exc)


_second_text: tuple[int, str] = (-1, "")


def _timestamp(ns: int) -> str:
    """ISO 8601 UTC with microseconds; the part up to the second is formatted once."""
    global _second_text
    second, micro = divmod(ns // 1000, 1_000_000)
    if second != _second_text[0]:
        _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{_second_text[1]}{micro:06d}Z"


def prune(directory: Path, retention_days: float) -> int:
    """Delete event files older than the retention; how many went."""
    horizon = time.time() - retention_days * 86400
    removed = 0
    for path in directory.glob("*.jsonl"):
        try:
            if path.stat().st_mtime < horizon:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def read_events(directory: Path) -> Iterator[dict[str, Any]]:
    """Every event of every file, skipping lines that are not whole JSON objects."""
    for path in sorted(directory.glob("*.jsonl")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for line in data.splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event
