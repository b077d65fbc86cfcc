"""The store's side of judging: the counters a verdict waits on are reserved here, and
given back here when the call fails or never reaches the server.

The verdict itself is made by ``engine.decide``; the gate asks it, and when the call
needs counters, asks the store (opened on first use, retried after a failure) and
hands the outcome back to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from mcpwall.engine.decide import NO_FACTS, Call, Pending, ToolFacts, Verdict, conclude, decide
from mcpwall.policy.model import Policy
from mcpwall.state.base import CounterStore, StoreUnavailable, Token

log = logging.getLogger("mcpwall")

_STORE_RETRY_SECONDS = 1.0


class Gate:
    """Judges calls against a policy and keeps the store's reservations."""

    def __init__(
        self,
        open_store: Callable[[], CounterStore],
        fail_open: bool = False,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._open_store = open_store
        self.prefix = prefix
        self._store: CounterStore | None = None
        self._store_retry_at = 0.0
        self.fail_open = fail_open
        self.clock = clock
        self.store_errors = 0
        self.store_us = 0.0  # how long the latest verdict waited on the store (µs)

    def judge(
        self,
        policy: Policy,
        call: Call,
        facts: ToolFacts = NO_FACTS,
        commit: bool = True,
    ) -> tuple[Verdict, tuple[Token, ...]]:
        """The verdict on the call, and what it reserved (to settle when it ends).
        ``commit`` false: a dry run, the store is read and never written."""
        verdict = decide(policy, call, facts, prefix=self.prefix, fail_open=self.fail_open)
        if not isinstance(verdict, Pending):
            self.store_us = 0.0
            return verdict, ()
        return self.conclude((verdict,), commit)[0]

    def decide(self, policy: Policy, call: Call, facts: ToolFacts = NO_FACTS) -> Verdict | Pending:
        """The verdict on the call, or the store checks it waits on (see ``conclude``)."""
        return decide(policy, call, facts, prefix=self.prefix, fail_open=self.fail_open)

    def conclude(
        self, pendings: Sequence[Pending], commit: bool = True
    ) -> list[tuple[Verdict, tuple[Token, ...]]]:
        """The verdicts on calls that wait on the store, and what each reserved. Calls
        that arrived together are reserved in one store call (one transaction), each
        as if alone, in this order; if that call fails, every one of them is concluded
        with the failure."""
        started = time.perf_counter_ns()
        try:
            if len(pendings) == 1:  # a call alone: no group to make
                pending = pendings[0]
                commits = commit and pending.commits
                outcomes = [self.store().reserve(pending.checks, self.clock(), commits)]
            else:
                requests = [(pending.checks, commit and pending.commits) for pending in pendings]
                outcomes = self.store().reserve_many(requests, self.clock())
        except StoreUnavailable as exc:
            self.store_us = (time.perf_counter_ns() - started) / 1000
            for pending in pendings:
                self._store_failed(pending.call.tool, exc, pending)
            return [(conclude(pending, exc, fail_open=self.fail_open), ()) for pending in pendings]
        self.store_us = (time.perf_counter_ns() - started) / 1000
        judged = []
        for pending, outcome in zip(pendings, outcomes, strict=True):
            verdict = conclude(pending, outcome, fail_open=self.fail_open)
            tokens = outcome if type(outcome) is tuple and commit and verdict.allowed else ()
            judged.append((verdict, tokens))
        return judged

    def _store_failed(self, tool: str, exc: StoreUnavailable, pending: Pending) -> None:
        if pending.denial is not None:
            return  # denied by a rule anyway: nothing the store could have changed
        self.store_errors += 1
        if self.fail_open:
            log.warning("state store unavailable, letting %s through (fail open): %s", tool, exc)
        else:
            log.error("state store unavailable, denying %s (fail closed): %s", tool, exc)

    def store(self) -> CounterStore:
        """The state store, opened on first use. Raises StoreUnavailable."""
        if self._store is not None:
            return self._store
        now = time.monotonic()
        if now < self._store_retry_at:
            raise StoreUnavailable("the state store could not be opened; retrying shortly")
        try:
            self._store = self._open_store()
        except StoreUnavailable:
            self._store_retry_at = now + _STORE_RETRY_SECONDS
            raise
        return self._store

    # -- after the call -----------------------------------------------------------------

    def settle(
        self, tokens: tuple[Token, ...], tool: str, *, failed: bool = False, unsent: bool = False
    ) -> None:
        """Give reservations back: all of them if the call never reached the server,
        the counters (not the rate limits) if it failed or never completed."""
        if not tokens or self._store is None:
            return
        if failed and not unsent:
            tokens = tuple(token for token in tokens if token.refundable)
        elif not unsent:
            return
        if not tokens:
            return
        try:
            self._store.release(tokens)
        except StoreUnavailable as exc:
            self.store_errors += 1
            log.error("could not give back reservations for %s: %s", tool, exc)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
