"""The policy cache: a second start skips the YAML parser, and reads back exactly what
the parser read; an entry that is damaged, stale, or not private to the user is never
used, and a policy file the user does not own is never cached."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from mcpwall import __version__
from mcpwall.policy import cache, check_policy, load_policy
from mcpwall.policy.source import load_text
from mcpwall.policy.tree import YList, YMap

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted([*(REPO / "policies").glob("*.yaml"), *(REPO / "src" / "mcpwall").rglob("*.yaml")])

ALLOWING = """\
version: "1"
tools:
  pods_exec:
    rules:
      - action: allow
"""
HIDING = ALLOWING + "hide: [pods_exec]\n"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(path))
    return path


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def hides_exec(path: Path) -> bool:
    return load_policy(path).plan("pods_exec").refusal is not None


def same_tree(a: Any, b: Any) -> bool:
    """Equal values of the same types, at the same positions."""
    if type(a) is not type(b):
        return False
    if isinstance(a, YMap):
        return (
            a.mark == b.mark
            and list(a) == list(b)
            and all(a.key_at(k) == b.key_at(k) and a.at(k) == b.at(k) for k in a)
            and all(same_tree(a[k], b[k]) for k in a)
        )
    if isinstance(a, YList):
        return (
            a.mark == b.mark
            and len(a) == len(b)
            and all(a.at(i) == b.at(i) and same_tree(a[i], b[i]) for i in range(len(a)))
        )
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


def round_trip(tree: YMap, digest: str = "d" * 64) -> YMap | None:
    cache.remember(digest, os.geteuid(), tree)
    return cache.recall(digest, os.geteuid())


def test_a_second_start_does_not_load_the_yaml_parser(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(HIDING)
    probe = (
        "import sys; from mcpwall.policy import load_policy; "
        f"p = load_policy({str(policy)!r}); "
        "print('yaml' in sys.modules, p.plan('pods_exec').refusal is not None)"
    )

    def start() -> list[str]:
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert start() == ["True", "True"]  # parsed from YAML, and kept
    assert start() == ["False", "True"]  # read back: the same policy, no parser
    [entry] = entries(cache_dir)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_yaml_file_reads_back_as_parsed(path: Path, cache_dir: Path) -> None:
    tree = load_text(path.read_text())
    if not isinstance(tree, YMap):  # a catalogue file that is a list: kept under a key
        holder = load_text("root: ~\n")
        holder["root"] = tree
        tree = holder
    assert same_tree(round_trip(tree), tree)


def test_scalars_read_back_with_their_types(cache_dir: Path) -> None:
    tree = load_text(
        textwrap.dedent(
            """\
            floats: [.nan, .inf, -.inf, -0.0, 1.5, 1e300, 1.0]
            ints: [0, -7, 0x1f, 123456789012345678901234567890]
            others: [true, false, ~, "", "1", yes, 12:30, "ünïcödé ✓"]
            "dotted.key": {nested: [[1, [2, {deep: []}]], {}]}
            """
        )
    )
    assert isinstance(tree, YMap)
    assert same_tree(round_trip(tree), tree)


def test_a_policy_read_back_compiles_to_the_same_errors_and_warnings(
    tmp_path: Path, cache_dir: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        textwrap.dedent(
            """\
            version: "1"
            hide: [pods_exec]
            redact: {}
            tools:
              pods_exec:
                rules:
                  - name: small
                    conditions: [{path: args.n, op: lte, value: 5}]
            """
        )
    )  # two warnings: rules of a hidden tool, a redact that names nothing
    first, from_yaml = check_policy(policy)
    second, from_cache = check_policy(policy)
    assert first is not None and second is not None
    assert len(entries(cache_dir)) == 1
    assert [w.severity for w in from_yaml] == ["warning", "warning"]
    assert from_cache == from_yaml
    assert second.digest == first.digest


def test_an_edited_policy_is_read_anew(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    assert not hides_exec(policy)
    policy.write_text(HIDING)
    assert hides_exec(policy)
    policy.write_text(ALLOWING)
    assert not hides_exec(policy)  # the first entry, still good for the first text
    assert len(entries(cache_dir)) == 2


def plant(cache_dir: Path, policy: Path, text: str, version: str = __version__) -> Path:
    """An entry for ``policy`` whose tree is ``text``'s: what a forger would write."""
    import hashlib

    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    cache_dir.mkdir(mode=0o700, exist_ok=True)
    cache.remember(digest, os.geteuid(), load_text(text))
    entry = cache_dir / f"{digest}.json"
    if version != __version__:
        body = orjson.loads(entry.read_bytes())
        body["entry"][1] = version
        entry.write_bytes(orjson.dumps(body))
    return entry


def test_a_private_entry_is_what_the_policy_reads(tmp_path: Path, cache_dir: Path) -> None:
    # The converse of the tests below: it shows that they would see an entry in use.
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    plant(cache_dir, policy, HIDING)
    assert hides_exec(policy)


def test_an_entry_others_can_write_is_not_used(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    plant(cache_dir, policy, HIDING).chmod(0o620)
    assert not hides_exec(policy)


def test_a_cache_directory_others_can_enter_is_not_used(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    entry = plant(cache_dir, policy, HIDING)
    planted = entry.read_bytes()
    cache_dir.chmod(0o755)
    assert not hides_exec(policy)
    assert entry.read_bytes() == planted  # and nothing was written over it
    other = tmp_path / "other.yaml"
    other.write_text(HIDING)
    assert hides_exec(other)
    assert len(entries(cache_dir)) == 1  # nothing was added either


def test_an_entry_that_is_a_symlink_is_not_followed(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    entry = plant(cache_dir, policy, HIDING)
    elsewhere = tmp_path / "elsewhere.json"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    assert not hides_exec(policy)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_policy_of_another_user_is_never_cached_or_read_from_the_cache(
    tmp_path: Path, cache_dir: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    plant(cache_dir, policy, HIDING)
    os.chown(policy, 65534, 65534)
    assert not hides_exec(policy)
    other = tmp_path / "other.yaml"
    other.write_text(HIDING)
    os.chown(other, 65534, 65534)
    assert hides_exec(other)
    assert len(entries(cache_dir)) == 1


def test_an_entry_of_another_version_is_read_as_yaml_and_replaced(
    tmp_path: Path, cache_dir: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOWING)
    entry = plant(cache_dir, policy, HIDING, version="0.0.0")
    assert not hides_exec(policy)
    assert orjson.loads(entry.read_bytes())["entry"][1] == __version__


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"\x00\xff garbage",
        b'{"entry": [1, "%s", "x"]',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["m", 1, 1, "version"]}',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["m", 1, 1, 5, 1, 1, 1, 1, true]}',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["m", "1", 1]}',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["l", 1, 1]}',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["m", 1, 1, "a", 1, 1, 1, 1, {"f": "1.5"}]}',
        b'{"entry": [1, "%s", "DIGEST"], "tree": ["x", 1, 1]}',
    ],
)
def test_a_damaged_entry_is_read_as_yaml_and_replaced(
    tmp_path: Path, cache_dir: Path, damage: bytes
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(HIDING)
    entry = plant(cache_dir, policy, HIDING)
    digest = entry.stem
    if b"%s" in damage:
        damage = damage % __version__.encode()
    entry.write_bytes(damage.replace(b"DIGEST", digest.encode()))
    assert hides_exec(policy)
    assert same_tree(cache.recall(digest, os.geteuid()), load_text(HIDING))


def test_an_invalid_policy_is_never_cached(tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: "1"\ntools:\n  pods_exec:\n    rules: 5\n')
    first = check_policy(policy)
    second = check_policy(policy)
    assert first[0] is None and first[1] and first[1] == second[1]
    assert entries(cache_dir) == []


def test_aliases_read_back_as_one_value_in_two_places(cache_dir: Path) -> None:
    tree = load_text("a: &rules {rules: [1]}\nb: *rules\nc: {<<: *rules}\nloop: &loop [1, *loop]\n")
    assert isinstance(tree, YMap)
    back = round_trip(tree)
    assert back is not None and same_tree(back["a"], tree["a"])
    assert back["b"] is back["a"]
    assert back["c"]["rules"] is back["a"]["rules"]  # merged, not copied
    assert back["loop"][1] is back["loop"]


def test_the_cache_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv(cache.CACHE_DIR_ENV, "")
    policy = tmp_path / "policy.yaml"
    policy.write_text(HIDING)
    assert hides_exec(policy)
    assert hides_exec(policy)
    assert not (home / ".mcpwall").exists()


def test_by_default_the_cache_is_under_the_users_mcpwall_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.delenv(cache.CACHE_DIR_ENV)
    policy = tmp_path / "policy.yaml"
    policy.write_text(HIDING)
    assert hides_exec(policy)
    assert len(entries(home / ".mcpwall" / "cache")) == 1


def test_only_the_newest_entries_are_kept(tmp_path: Path, cache_dir: Path) -> None:
    for number in range(cache.KEEP + 3):
        policy = tmp_path / f"policy{number}.yaml"
        policy.write_text(f"{ALLOWING}description: version {number}\n")
        load_policy(policy)
    assert len(entries(cache_dir)) == cache.KEEP
