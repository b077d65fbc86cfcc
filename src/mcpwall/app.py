"""The composition root: policy, state store, engine and transport wired together."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpwall.engine.gate import Gate
from mcpwall.policy import Policy, load_policy
from mcpwall.proxy.relay import Send, Session
from mcpwall.proxy.stdio import DEFAULT_MAX_MESSAGE, StdioProxy
from mcpwall.state import open_store

log = logging.getLogger("mcpwall")


@dataclass(frozen=True, slots=True)
class StateOptions:
    dsn: str | None = None
    directory: str | None = None
    prefix: str = ""
    fail_open: bool = False

    def gate(self) -> Gate:
        return Gate(lambda: open_store(self.dsn, self.directory), self.fail_open, self.prefix)


def run_stdio(
    policy_path: str,
    command: list[str],
    state: StateOptions,
    max_message: int = DEFAULT_MAX_MESSAGE,
) -> int:
    """Run the stdio proxy until the server exits; the exit status to use."""
    policy = load_policy(policy_path)
    for warning in policy.warnings:
        log.warning("%s", warning)
    gate = state.gate()
    session_id = uuid.uuid4().hex
    _log_start(policy, session_id, command)

    def make_session(to_server: Send, to_client: Send) -> Session:
        return Session(session_id, lambda: policy, gate, to_server, to_client)

    proxy = StdioProxy(command, make_session, max_message)
    try:
        return run_loop(proxy.run)
    finally:
        gate.close()


def _log_start(policy: Policy, session_id: str, command: list[str]) -> None:
    mode = "monitor mode (nothing is blocked)" if policy.monitor else "enforcing"
    log.info("%s %s on %s (session %s)", mode, Path(policy.path).name, command[0], session_id)


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a coroutine on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
