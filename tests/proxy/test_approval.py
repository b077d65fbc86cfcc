"""The state mcpwall mints for 2026-07-28 approval rounds: bound to the session and the
call, unforgeable, expiring, and carrying the server's own state back to it."""

from __future__ import annotations

import pytest

from mcpwall.proxy.approval import (
    APPROVAL_KEY,
    Grants,
    Seal,
    call_digest,
    client_can_elicit,
    strip_retry,
)

ACCEPT = {APPROVAL_KEY: {"action": "accept"}}


def _retry(state: str, responses: dict | None = None) -> dict:
    return {"name": "t", "inputResponses": responses or ACCEPT, "requestState": state}


def test_a_sealed_state_reads_back_only_for_its_session_and_call() -> None:
    seal = Seal()
    digest = call_digest("pods_delete", {"name": "a"})
    state = seal.mint("s1", digest, 60, None)
    assert seal.read("s1", digest, _retry(state)).sealed
    assert seal.read("s1", digest, _retry(state)).answer == "accept"
    assert not seal.read("s2", digest, _retry(state)).sealed
    assert not seal.read("s1", call_digest("pods_delete", {"name": "b"}), _retry(state)).sealed
    assert not Seal().read("s1", digest, _retry(state)).sealed  # another key: another process


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),
        lambda s: s.replace("mcpwall-approval.", "mcpwall-approval.9"),
        lambda s: s + ".x",
        lambda s: "mcpwall-approval.",
    ],
)
def test_a_tampered_state_is_not_sealed(tamper) -> None:  # type: ignore[no-untyped-def]
    seal = Seal()
    state = seal.mint("s", "d", 60, "inner")
    assert not seal.read("s", "d", _retry(tamper(state))).sealed


def test_an_expired_state_is_not_sealed() -> None:
    now = [1_000_000.0]
    seal = Seal(clock=lambda: now[0])
    state = seal.mint("s", "d", 1, None)
    assert seal.read("s", "d", _retry(state)).sealed
    now[0] += 5
    assert not seal.read("s", "d", _retry(state)).sealed


def test_the_servers_state_rides_along_and_is_given_back() -> None:
    seal = Seal()
    state = seal.mint("s", "d", 60, "server-state-1")
    retry = seal.read("s", "d", _retry(state, {**ACCEPT, "ask-1": {"action": "accept"}}))
    assert retry.sealed and retry.inner_state == "server-state-1"
    params = _retry(state, {**ACCEPT, "ask-1": {"action": "accept"}})
    stripped = strip_retry(params, retry.inner_state)
    assert stripped == {
        "name": "t",
        "inputResponses": {"ask-1": {"action": "accept"}},
        "requestState": "server-state-1",
    }
    assert strip_retry(_retry(seal.mint("s", "d", 60, None)), None) == {"name": "t"}


def test_a_state_that_is_not_mcpwalls_passes_as_the_servers() -> None:
    retry = Seal().read("s", "d", {"requestState": "opaque-server-state"})
    assert (retry.sealed, retry.answer, retry.inner_state) == (False, None, "opaque-server-state")


@pytest.mark.parametrize(
    ("answer", "read"),
    [({"action": "decline"}, "decline"), ({"action": "cancel"}, "cancel"), ({"x": 1}, "error")],
)
def test_answers_are_read_strictly(answer: dict, read: str) -> None:
    seal = Seal()
    state = seal.mint("s", "d", 60, None)
    assert seal.read("s", "d", _retry(state, {APPROVAL_KEY: answer})).answer == read


def test_grants_expire() -> None:
    grants = Grants()
    grants.add("a", 60)
    grants.add("b", -1)
    assert grants.covers("a") and not grants.covers("b") and not grants.covers("c")


@pytest.mark.parametrize(
    ("capabilities", "can"),
    [
        ({"elicitation": {}}, True),
        ({"elicitation": {"form": {}}}, True),
        ({"elicitation": {"url": {}}}, False),
        ({"elicitation": True}, False),
        ({"sampling": {}}, False),
        (None, False),
    ],
)
def test_elicitation_capability(capabilities: object, can: bool) -> None:
    assert client_can_elicit(capabilities) is can
