"""Reading YAML: positions, duplicate keys, YAML 1.2 scalars as Intercept's loader reads."""

from __future__ import annotations

import pytest

from mcpwall.policy.source import Mark, SourceError, YList, YMap, load_text


def test_values_keep_their_positions() -> None:
    data = load_text("version: '1'\ntools:\n  pods_delete:\n    rules: [1, 2]\n")
    assert isinstance(data, YMap)
    assert data.key_at("tools") == Mark(2, 1)
    tools = data["tools"]
    assert tools.key_at("pods_delete") == Mark(3, 3)
    rules = tools["pods_delete"]["rules"]
    assert isinstance(rules, YList)
    assert rules.at(1) == Mark(4, 16)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("on", "on"),
        ("no", "no"),
        ("Off", "Off"),  # YAML 1.1 booleans: text
        ("12:30", "12:30"),  # YAML 1.1 sexagesimal: text
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("0o17", 15),
        ("0x1f", 31),
        ("-42", -42),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("'true'", "true"),
        ('"5"', "5"),
        ("!!str 5", "5"),
        ("!!float 5", 5.0),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    assert load_text(f"v: {text}\n")["v"] == value


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    with pytest.raises(SourceError) as caught:
        load_text("tools:\n  pods_delete: {}\n  other: {}\n  pods_delete: {}\nx: 1\nx: 2\n")
    problems = caught.value.problems
    assert [(mark.line, message) for mark, message, _ in problems] == [
        (4, 'duplicate key "pods_delete" (first defined on line 2)'),
        (6, 'duplicate key "x" (first defined on line 5)'),
    ]


def test_merge_keys_and_aliases() -> None:
    data = load_text("base: &b {max: 5, window: 60}\nrate:\n  <<: *b\n  max: 9\n")
    assert data["rate"] == {"max": 9, "window": 60}


def test_alias_bombs_do_not_expand() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 31):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    data = load_text("\n".join(lines) + "\n")  # 10**31 leaves if expanded
    assert data["a30"][0] is data["a29"]


def test_syntax_error_has_its_line() -> None:
    with pytest.raises(SourceError) as caught:
        load_text('version: "1"\ntools:\n  t:\n    rules: [1, 2\n  u: {}\n')
    _, message, hint = caught.value.problems[0]
    assert message.startswith("YAML syntax error")
    assert "starts on line 4" in message
    assert "not closed" in hint


def test_unsupported_tags_are_errors() -> None:
    with pytest.raises(SourceError) as caught:
        load_text("v: !!python/object:os.system x\n")
    assert "unsupported YAML tag" in caught.value.problems[0][1]
