"""Hot reload: an edit to the policy file applies to the next call.

The file is looked at every POLL_SECONDS (its inode, size and modification time; then
its content's hash, so that a touch reloads nothing). Editors that save by writing a new
file and renaming it over the old one are seen like any other edit. A new version that
does not validate is refused, its errors logged with file:line, and the policy in force
stays. Counters live in the store, not in the policy: a reload keeps them all.

Every decision reads the policy once, from one reference swapped whole: no call is ever
judged by half of one version and half of another.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from mcpwall.policy import Policy, check_policy

log = logging.getLogger("mcpwall")

POLL_SECONDS = 0.2

ReloadHook = Callable[[bool, str, list[str]], None]


class PolicyHolder:
    """The policy in force; calling it gives the current version."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy

    def __call__(self) -> Policy:
        return self.current


class PolicyWatcher:
    def __init__(self, holder: PolicyHolder, on_reload: ReloadHook | None = None) -> None:
        self._holder = holder
        self._path = Path(holder.current.path)
        self._on_reload = on_reload
        self._seen = _signature(self._path)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(POLL_SECONDS, self._poll)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _poll(self) -> None:
        try:
            signature = _signature(self._path)
            if signature != self._seen and signature is not None:
                self._seen = signature
                self._reload()
        finally:
            self._timer = asyncio.get_running_loop().call_later(POLL_SECONDS, self._poll)

    def _reload(self) -> None:
        policy, problems = check_policy(self._path)
        if policy is None:
            errors = [str(p) for p in problems if p.severity == "error"]
            for error in errors:
                log.error("reload refused: %s", error)
            log.error(
                "the policy %s does not validate; the previous version stays in force", self._path
            )
            if self._on_reload is not None:
                self._on_reload(False, "", errors)
            return
        if policy.digest == self._holder.current.digest:
            return
        self._holder.current = policy
        log.info("reloaded the policy %s (sha256 %s)", self._path, policy.digest[:12])
        if self._on_reload is not None:
            self._on_reload(True, policy.digest, [])


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # mid-rename, or gone: keep the policy in force
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
