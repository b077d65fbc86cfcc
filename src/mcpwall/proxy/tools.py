"""What mcpwall learns from a server's tool lists, shared by every session with that
server: the input schemas that ``validate_arguments`` checks calls against, and the
pins of the tools' definitions (``pin: warn`` reports a changed tool, ``pin: enforce``
also hides it and refuses its calls until the change is accepted). ``decide`` reads
both through the ToolFacts that a ToolView is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mcpwall.engine.pins import PinBook
from mcpwall.engine.schemas import Schemas
from mcpwall.policy.model import Policy
from mcpwall.state.base import StoreUnavailable

log = logging.getLogger("mcpwall")

Note = Callable[[str, dict[str, Any]], None]  # an event for the audit log and metrics


class ToolView:
    def __init__(self, pins: PinBook | None = None, fail_open: bool = False) -> None:
        self.schemas = Schemas()
        self.pins = pins
        self._fail_open = fail_open

    def listed(self, policy: Policy, tools: list[Any], note: Note) -> list[Any] | None:
        """Learn from one tools/list result; the tools the agent may see, or None when
        it may see them all."""
        self.schemas.learn(tools)
        held: set[str] = set()
        if self.pins is not None and policy.pin_mode != "off":
            held = self._pin(policy, tools, note)
        if (not policy.filters_list or policy.monitor) and not held:
            return None
        kept = [
            tool
            for tool in tools
            if type(tool) is dict
            and type(tool.get("name")) is str
            and tool["name"] not in held
            and (policy.monitor or policy.visible(tool["name"]))
        ]
        return None if len(kept) == len(tools) else kept

    def _pin(self, policy: Policy, tools: list[Any], note: Note) -> set[str]:
        """Observe the pins; the tools to hold back from the agent."""
        assert self.pins is not None
        enforce = policy.pin_mode == "enforce" and not policy.monitor
        try:
            changes = self.pins.observe(tools)
        except StoreUnavailable as exc:
            if enforce and not self._fail_open:
                log.error("cannot check the tools' pins, holding them back (fail closed): %s", exc)
                return set(self.pins.unverified)
            log.error("cannot check the tools' pins: %s", exc)
            return set()
        for change in changes:
            what = ", ".join(change.fields)
            if enforce:
                log.warning(
                    'tool "%s" of %s changed since it was pinned (%s): held back until '
                    "`mcpwall pin accept` approves it",
                    change.tool,
                    self.pins.server,
                    what,
                )
            else:
                log.warning(
                    'tool "%s" of %s changed since it was pinned (%s)',
                    change.tool,
                    self.pins.server,
                    what,
                )
            note(
                "tool_changed",
                {
                    "server": self.pins.server,
                    "tool": change.tool,
                    "fields": change.fields,
                    "held": enforce,
                },
            )
        return set(self.pins.held) if enforce else set()

    # -- ToolFacts ------------------------------------------------------------------------

    def held(self, tool: str) -> bool | None:
        if self.pins is None:
            return False
        try:
            return self.pins.holds(tool)
        except StoreUnavailable as exc:
            how = "letting it through (fail open)" if self._fail_open else "denying it"
            log.error("cannot check the pin of %s, %s: %s", tool, how, exc)
            return None

    def schema_problem(self, tool: str, args: dict[str, Any]) -> str | None:
        return self.schemas.problem(tool, args)
