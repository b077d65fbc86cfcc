"""The classifier on tools as a server lists them: each verdict with its evidence, the
spec's defaults for missing hints, and disagreements flagged rather than smoothed over."""

from __future__ import annotations

from typing import Any

import pytest

from mcpwall.catalog.classify import Category, Risk, ToolFacts, classify


def verdict(tool: dict[str, Any]) -> Any:
    return classify(ToolFacts.from_wire(tool))


def schema(**properties: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in properties.items()}}


def test_a_read_only_hint_does_not_outvote_a_name_that_deletes() -> None:
    result = verdict(
        {
            "name": "delete_everything",
            "description": "Deletes every record.",
            "annotations": {"readOnlyHint": True},
        }
    )
    assert (result.category, result.risk) == (Category.DESTRUCTIVE, Risk.HIGH)
    assert result.flags == (
        'the annotations (readOnlyHint: true) say Read, but the name ("delete") says Destructive',
    )


def test_a_read_that_returns_credentials_is_flagged_and_high() -> None:
    result = verdict(
        {
            "name": "configuration_view",
            "description": "Get the current Kubernetes configuration content as a kubeconfig YAML",
            "annotations": {"readOnlyHint": True, "destructiveHint": False},
        }
    )
    assert (result.category, result.risk) == (Category.READ, Risk.HIGH)
    assert len(result.flags) == 1 and result.flags[0].startswith("a read, yet it may hand out")
    assert any("Low -> High" in reason for reason in result.reasons)


def test_reading_from_a_credentials_file_is_not_returning_credentials() -> None:
    result = verdict(
        {
            "name": "configuration_contexts_list",
            "description": "List the context names and server urls from the kubeconfig file",
            "annotations": {"readOnlyHint": True},
        }
    )
    assert (result.category, result.risk, result.flags) == (Category.READ, Risk.LOW, ())


def test_without_annotations_the_spec_defaults_apply_and_say_so() -> None:
    result = verdict({"name": "frobnicate", "inputSchema": schema(target="string")})
    assert (result.category, result.risk) == (Category.DESTRUCTIVE, Risk.HIGH)
    assert result.signals[0].observed == "none declared"
    assert not result.signals[0].declared
    assert "spec's defaults" in result.reasons[0]


def test_a_missing_read_only_hint_means_the_tool_may_write() -> None:
    # vm_clone as v0.0.59 sent it: false hints left out of the wire.
    result = verdict(
        {
            "name": "vm_clone",
            "annotations": {
                "destructiveHint": True,
                "idempotentHint": True,
                "openWorldHint": False,
            },
        }
    )
    assert result.category is not Category.READ
    read_only = next(s for s in result.signals if s.source == "readOnlyHint")
    assert read_only.observed == "absent (the spec's default: false)"


def test_every_hint_shows_in_the_evidence_with_its_default() -> None:
    result = verdict({"name": "pods_run", "annotations": {"readOnlyHint": False}})
    seen = {s.source: s.observed for s in result.signals if s.family == "annotations"}
    assert seen == {
        "readOnlyHint": "false",
        "destructiveHint": "absent (the spec's default: true)",
        "idempotentHint": "absent (the spec's default: false)",
        "openWorldHint": "absent (the spec's default: true)",
    }


def test_name_and_annotations_that_disagree_are_both_named() -> None:
    result = verdict(
        {
            "name": "vm_clone",
            "annotations": {
                "readOnlyHint": False,
                "destructiveHint": True,
                "idempotentHint": True,
                "openWorldHint": False,
            },
        }
    )
    assert (result.category, result.risk) == (Category.DESTRUCTIVE, Risk.HIGH)
    assert result.flags == (
        'the name ("clone") says Write, but the annotations (destructiveHint: true) say '
        "Destructive",
    )


@pytest.mark.parametrize(
    ("tool", "category", "risk"),
    [
        ({"name": "pods_exec", "inputSchema": schema(command="array")}, "Execute", "Critical"),
        ({"name": "query_db", "inputSchema": schema(sql="string")}, "Execute", "Critical"),
        (
            {"name": "create_payment", "inputSchema": schema(amount="integer", currency="string")},
            "Financial",
            "High",
        ),
        ({"name": "refund", "annotations": {"readOnlyHint": False}}, "Financial", "High"),
        ({"name": "list_invoices", "annotations": {"readOnlyHint": True}}, "Read", "Low"),
        (
            {
                "name": "fetch_url",
                "annotations": {"readOnlyHint": True},
                "inputSchema": schema(url="string"),
            },
            "Read",
            "Medium",
        ),
        (
            {
                "name": "write_file",
                "annotations": {"readOnlyHint": False, "destructiveHint": False},
                "inputSchema": schema(path="string"),
            },
            "Write",
            "High",
        ),
        (
            {
                "name": "echo",
                "description": "Echoes back the input string",
                "annotations": {"readOnlyHint": True},
            },
            "Read",
            "Low",
        ),
    ],
)
def test_categories_and_risks(tool: dict[str, Any], category: str, risk: str) -> None:
    result = verdict(tool)
    assert (result.category.value, result.risk.value) == (category, risk)
    assert result.reasons and result.signals


def test_a_flagged_tool_is_never_low() -> None:
    result = verdict(
        {
            "name": "list_items",
            "description": "Removes stale items.",
            "annotations": {"readOnlyHint": True},
        }
    )
    assert result.flags and result.risk is not Risk.LOW


def test_the_verdict_as_json_carries_every_signal() -> None:
    body = verdict({"name": "pods_delete", "annotations": {"destructiveHint": True}}).as_json()
    assert body["category"] == "Destructive"
    assert {s["source"] for s in body["signals"]} >= {"readOnlyHint", "destructiveHint", "name"}


def test_a_tool_that_only_says_it_is_not_read_only_is_taken_as_destructive() -> None:
    # destructiveHint defaults to true: a "create" name does not talk that down.
    result = verdict({"name": "create_issue", "annotations": {"readOnlyHint": False}})
    assert (result.category, result.risk) == (Category.DESTRUCTIVE, Risk.HIGH)
    assert result.flags == (
        'the name ("create") says Write, but the annotations (destructiveHint: absent '
        "(the spec's default: true)) say Destructive",
    )
