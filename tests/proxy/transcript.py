"""The relay without processes: lines fed in on either side, the lines that come out
asserted, and a clock the test moves by hand for deadlines, windows and approvals."""

from __future__ import annotations

import heapq
import itertools
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcpwall.engine.gate import Gate
from mcpwall.policy import load_policy
from mcpwall.policy.model import Policy
from mcpwall.proxy.approval import Seal
from mcpwall.proxy.relay import Session
from mcpwall.proxy.tools import ToolView
from mcpwall.state.memory import MemoryStore


class Handle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """Timers that fire only when the test moves time on."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._queue: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Any:
        handle = Handle(self.now + delay, callback, args)
        heapq.heappush(self._queue, (handle.when, next(self._order), handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, handle = heapq.heappop(self._queue)
            self.now = when
            if not handle.cancelled:
                handle.callback(*handle.args)
        self.now = end

    @property
    def pending(self) -> int:
        return sum(1 for _, _, handle in self._queue if not handle.cancelled)


class Transcript:
    """One relay Session with a policy, a memory store and a hand-moved clock."""

    def __init__(
        self,
        tmp_path: Path,
        policy: str,
        *,
        call_timeout: float | None = None,
        store: Any = None,
        tools: ToolView | None = None,
        observers: tuple[Any, ...] = (),
    ) -> None:
        path = tmp_path / f"policy-{next(_files)}.yaml"
        path.write_text(textwrap.dedent(policy).lstrip())
        self.policy: Policy = load_policy(path)
        self.clock = Clock()
        self.store = store if store is not None else MemoryStore()
        self.gate = Gate(lambda: self.store, clock=self.clock.time)
        self.to_server: list[bytes] = []
        self.to_client: list[tuple[bytes, Any]] = []
        self.session = Session(
            "transcript",
            lambda: self.policy,
            self.gate,
            self.to_server.append,
            lambda data, reply_to: self.to_client.append((data, reply_to)),
            observers=observers,
            call_timeout=call_timeout,
            tools=tools,
            seal=Seal(clock=self.clock.time),
            timers=self.clock,
        )

    # -- in ---------------------------------------------------------------------------------

    def client(self, message: Any) -> None:
        self.session.from_client(_line(message))

    def server(self, message: Any) -> None:
        self.session.from_server(_line(message))

    def handshake(self, version: str = "2025-06-18", capabilities: Any = None) -> None:
        params = {"protocolVersion": version, "capabilities": capabilities or {}}
        self.client({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": params})
        self.server({"jsonrpc": "2.0", "id": "init", "result": {"protocolVersion": version}})
        self.server_got()
        self.client_got()

    # -- out --------------------------------------------------------------------------------

    def server_got(self) -> list[Any]:
        """What reached the server since the last look, decoded."""
        got = [json.loads(line) for line in self.to_server]
        self.to_server.clear()
        return got

    def client_got(self) -> list[Any]:
        got = [json.loads(data) for data, _ in self.to_client]
        self.to_client.clear()
        return got

    def only_answer(self) -> Any:
        """The one message the client got since the last look (and nothing else)."""
        got = self.client_got()
        assert len(got) == 1, got
        return got[0]


_files = itertools.count()


def _line(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    return json.dumps(message, separators=(",", ":")).encode()


def call(request_id: Any, tool: str, args: dict[str, Any] | None = None, **params: Any) -> Any:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": args or {}, **params},
    }


def result(request_id: Any, text: str = "ok", **fields: Any) -> Any:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {"content": [{"type": "text", "text": text}], **fields},
    }


def denied(message: Any) -> str | None:
    """The reason of mcpwall's denial, or None when the message is not one."""
    result_ = message.get("result")
    if type(result_) is dict and result_.get("isError"):
        meta = result_.get("_meta", {}).get("mcpwall/decision")
        if meta is not None:
            return meta["reason"]
    return None
