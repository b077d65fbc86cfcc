"""What the relay knows of one judged call, and who is told about it.

The verdict is frozen once ``decide`` has made it; what the relay learns afterwards
(what the store reserved, how long judging took, what came of asking a human, what
was redacted from the result) is written here, on a record the relay owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mcpwall.engine.decide import ApprovalOutcome, Step, Verdict
from mcpwall.policy.model import Rule
from mcpwall.state.base import Token


@dataclass(slots=True, eq=False)
class CallRecord:
    """One tools/call as the audit log, the metrics and the traces report it."""

    verdict: Verdict
    tokens: tuple[Token, ...] = ()
    request_id: Any = None
    latency_us: float = 0.0
    store_us: float = 0.0  # of latency_us, the store call the verdict waited on
    policy_digest: str = ""
    args: Any = None  # dropped once the call has ended: big arguments are let go
    args_digest: str | None = None
    approval_outcome: ApprovalOutcome | None = None
    redacted: dict[str, int] | None = None  # secrets taken out of the result, by kind
    subject: str | None = None  # the caller's token subject, under --auth
    meta: Any = None  # the call's params._meta, as the agent sent it (a trace context)
    headers: dict[str, str] | None = None  # over HTTP: the request's headers

    @property
    def tool(self) -> str:
        return self.verdict.tool

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def step(self) -> Step | None:
        return self.verdict.step

    @property
    def rule(self) -> str | None:
        return self.verdict.rule

    @property
    def reason(self) -> str | None:
        return self.verdict.reason

    @property
    def retry_after_s(self) -> float | None:
        return self.verdict.retry_after_s

    @property
    def monitored(self) -> bool:
        return self.verdict.monitored

    @property
    def approval(self) -> Rule | None:
        return self.verdict.approval


class Observer(Protocol):
    """Sees every judged call: the audit log, the metrics."""

    def decided(self, session: str, record: CallRecord, size: int) -> None:
        """Called once per judged call, as soon as it is decided. ``size``: the bytes of
        the message. A call that is forwarded is reported again when it ends."""

    def answered(self, session: str, record: CallRecord, error: str | None) -> None:
        """A forwarded call ended: answered (``error`` None, or what went wrong), or it
        never will be (the server went away). A call held for approval that was not
        approved ends here too, as a denial."""

    def noted(self, session: str, kind: str, fields: dict[str, Any]) -> None:
        """Something else worth recording: an approval asked or answered, a tool whose
        definition changed, secrets redacted from a result."""
