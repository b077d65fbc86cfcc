"""What the audit logs say: instances, calls, denials and why, approvals, tools whose
definition changed since pinned, secrets redacted. ``mcpwall status``."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mcpwall.ops.audit import HEARTBEAT_SECONDS, read_events

RECENT = 10


@dataclass
class Instance:
    id: str
    pid: int | None = None
    policy: str = ""
    transport: str = ""
    state_store: str = ""
    started: str = ""
    last_seen: str = ""
    status: str = "unknown"  # running, stopped, dead
    calls: int = 0
    denials: int = 0
    exit_code: int | None = None


@dataclass
class Summary:
    instances: list[Instance] = field(default_factory=list)
    calls: int = 0
    denials: int = 0
    monitored: int = 0
    upstream_errors: int = 0
    calls_last_5_min: int = 0
    denials_by_tool: list[tuple[str, int]] = field(default_factory=list)
    denials_by_rule: list[tuple[str, int]] = field(default_factory=list)
    recent_denials: list[dict[str, Any]] = field(default_factory=list)
    approvals: dict[str, int] = field(default_factory=dict)  # outcome -> count
    redacted: dict[str, int] = field(default_factory=dict)  # detector or pattern -> count
    # The latest report of each changed tool: ts, server, tool, fields, held.
    tool_changes: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(directory: Path, now: float) -> Summary:
    summary = Summary()
    instances: dict[str, Instance] = {}
    by_tool: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    denials: list[dict[str, Any]] = []
    approvals: Counter[str] = Counter()
    redacted: Counter[str] = Counter()
    changes: dict[tuple[str, str], dict[str, Any]] = {}
    for event in read_events(directory):
        ident = str(event.get("instance", "?"))
        instance = instances.setdefault(ident, Instance(ident))
        stamp = str(event.get("ts", ""))
        instance.last_seen = max(instance.last_seen, stamp)
        kind = event.get("type")
        if kind == "startup":
            instance.pid = event.get("pid")
            instance.policy = str(event.get("policy", ""))
            instance.transport = str(event.get("transport", ""))
            instance.state_store = str(event.get("state", ""))
            instance.started = stamp
            instance.status = "running"
        elif kind == "shutdown":
            instance.status = "stopped"
            instance.exit_code = event.get("exit_code")
        elif kind == "decision":
            instance.calls += 1
            summary.calls += 1
            if _age(stamp, now) <= 300:
                summary.calls_last_5_min += 1
            if event.get("upstream_error"):
                summary.upstream_errors += 1
            if event.get("decision") == "monitored":
                summary.monitored += 1
            if event.get("decision") == "denied":
                instance.denials += 1
                summary.denials += 1
                by_tool[str(event.get("tool"))] += 1
                by_rule[str(event.get("rule"))] += 1
                denials.append(event)
        elif kind == "approval":
            approvals[str(event.get("outcome"))] += 1
        elif kind == "redacted" and isinstance(event.get("found"), dict):
            redacted.update({str(k): int(v) for k, v in event["found"].items()})
        elif kind == "tool_changed":
            changes[(str(event.get("server")), str(event.get("tool")))] = {
                key: event.get(key) for key in ("ts", "server", "tool", "fields", "held")
            }
    for instance in instances.values():
        if instance.status == "running" and not _alive(instance.pid):
            instance.status = "dead"  # no shutdown record: killed or crashed
        elif instance.status == "running" and _age(instance.last_seen, now) > 3 * HEARTBEAT_SECONDS:
            instance.status = "unknown"  # silent too long: maybe another host's
    summary.instances = sorted(instances.values(), key=lambda i: i.started, reverse=True)
    summary.denials_by_tool = by_tool.most_common(RECENT)
    summary.denials_by_rule = by_rule.most_common(RECENT)
    denials.sort(key=lambda e: str(e.get("ts", "")), reverse=True)
    summary.recent_denials = [
        {key: event.get(key) for key in ("ts", "instance", "session", "tool", "rule", "reason")}
        for event in denials[:RECENT]
    ]
    summary.approvals = dict(approvals)
    summary.redacted = dict(redacted)
    summary.tool_changes = sorted(changes.values(), key=lambda c: str(c["ts"]), reverse=True)
    return summary


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(stamp: str, now: float) -> float:
    try:
        return now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")
