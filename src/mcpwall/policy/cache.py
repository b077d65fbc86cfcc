"""Policies that validated, kept parsed on disk, so that the next start skips the YAML
parser: importing it and reading the file is a tenth of mcpwall's time to its first
answer, and the proxy cannot start the server before the policy has been judged.

An entry holds the parsed tree (policy.tree), not the compiled policy: the compiler
runs on every start, so a policy read from the cache is judged by the same code, with
the same errors and warnings at the same lines, as one read from YAML. An entry is
found by the SHA-256 of the file's bytes and serves one mcpwall version only.

The cache is trusted no more than the policy file: it is used only when the file, the
cache directory and the entry all belong to the user mcpwall runs as, and the
directory and the entry are that user's alone. A policy the user cannot edit (root's,
say) cannot be edited through the cache either.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from pathlib import Path
from typing import Any

import orjson

from mcpwall import __version__
from mcpwall.policy.tree import Mark, YList, YMap

CACHE_DIR_ENV = "MCPWALL_CACHE_DIR"  # where entries go; empty: no cache
DEFAULT_CACHE_DIR = "~/.mcpwall/cache"
KEEP = 32  # entries; the least recently written beyond these are deleted
_FORMAT = 1

log = logging.getLogger(__name__)


def recall(digest: str, owner: int) -> YMap | None:
    """The tree of the policy whose bytes hash to ``digest``, if an entry can be trusted;
    ``owner`` is the policy file's owner."""
    directory = _directory(owner, create=False)
    if directory is None:
        return None
    try:
        fd = os.open(directory / f"{digest}.json", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not _private(info) or not stat.S_ISREG(info.st_mode):
            log.debug("policy cache: entry for %s is not private to this user; not used", digest)
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            entry = orjson.loads(file.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    finally:
        os.close(fd)
    if not isinstance(entry, dict) or entry.get("entry") != [_FORMAT, __version__, digest]:
        return None
    try:
        tree = _decode(entry.get("tree"))
    except (TypeError, ValueError, IndexError, KeyError):
        log.debug("policy cache: entry for %s is damaged; reading the YAML", digest)
        return None
    return tree if isinstance(tree, YMap) else None


def remember(digest: str, owner: int, tree: YMap) -> None:
    """Keep the tree of a policy that validated."""
    directory = _directory(owner, create=True)
    if directory is None:
        return
    try:
        body = orjson.dumps({"entry": [_FORMAT, __version__, digest], "tree": _encode(tree)})
    except orjson.JSONEncodeError:  # a string JSON cannot hold (a lone surrogate)
        return
    temporary = directory / f".{digest}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        os.replace(temporary, directory / f"{digest}.json")
        _prune(directory)
    except OSError as exc:
        log.debug("policy cache: cannot write %s: %s", directory, exc)
        temporary.unlink(missing_ok=True)


def _directory(owner: int, *, create: bool) -> Path | None:
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None or owner != geteuid():
        return None
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured == "":
        return None
    directory = Path(configured or DEFAULT_CACHE_DIR).expanduser()
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or not _private(info):
        log.debug("policy cache: %s is not a directory private to this user; not used", directory)
        return None
    return directory


def _private(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0


def _prune(directory: Path) -> None:
    entries = []
    for path in directory.glob("*.json"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, path in entries[KEEP:]:
        path.unlink(missing_ok=True)


# An entry's tree: a mapping is ["m", line, col, then key, key line, key col, value
# line, value col, value for each key]; a list is ["l", line, col, then line, col, value
# for each item]. A mapping or list met again (a YAML alias) is ["r", n]: the n-th one
# written, counting from 0 in the order they begin. What JSON cannot hold exactly is
# {"f": "nan" | "inf" | "-inf"} or {"i": "<digits>"} (beyond 64 bits).
_MAP_STEP = 6
_LIST_STEP = 3
_INT_RANGE = range(-(2**63), 2**64)


def _encode(value: Any, seen: dict[int, int] | None = None) -> Any:
    seen = {} if seen is None else seen
    if isinstance(value, YMap | YList):
        if id(value) in seen:
            return ["r", seen[id(value)]]
        seen[id(value)] = len(seen)
        out: list[Any] = ["m" if isinstance(value, YMap) else "l", *_pair(value.mark)]
        if isinstance(value, YMap):
            for key, item in value.items():
                out += [key, *_pair(value.key_at(key)), *_pair(value.at(key))]
                out.append(_encode(item, seen))
        else:
            for index, item in enumerate(value):
                out += [*_pair(value.at(index)), _encode(item, seen)]
        return out
    if type(value) is float and not math.isfinite(value):
        return {"f": repr(value)}
    if type(value) is int and value not in _INT_RANGE:
        return {"i": str(value)}
    return value


def _pair(mark: Mark) -> tuple[int, int]:
    return mark.line, mark.col


def _decode(node: Any, made: list[YMap | YList] | None = None) -> Any:
    made = [] if made is None else made
    if type(node) is list:
        kind, *head = node[:3]
        body = node[3:]
        if kind == "r" and len(node) == 2 and type(node[1]) is int and node[1] >= 0:
            return made[node[1]]
        if kind == "m" and len(body) % _MAP_STEP == 0:
            mapping = YMap(_mark(*head))
            made.append(mapping)
            for at in range(0, len(body), _MAP_STEP):
                key, key_line, key_col, value_line, value_col, item = body[at : at + _MAP_STEP]
                if type(key) is not str or key in mapping:
                    raise ValueError(key)
                mapping[key] = _decode(item, made)
                mapping.key_marks[key] = _mark(key_line, key_col)
                mapping.value_marks[key] = _mark(value_line, value_col)
            return mapping
        if kind == "l" and len(body) % _LIST_STEP == 0:
            sequence = YList(_mark(*head))
            made.append(sequence)
            for at in range(0, len(body), _LIST_STEP):
                item_line, item_col, item = body[at : at + _LIST_STEP]
                sequence.append(_decode(item, made))
                sequence.marks.append(_mark(item_line, item_col))
            return sequence
        raise ValueError(kind)
    if type(node) is dict:
        [(kind, text)] = node.items()
        if kind == "i" and type(text) is str:
            return int(text)
        if kind == "f" and type(text) is str and not math.isfinite(value := float(text)):
            return value
        raise ValueError(node)
    return node


def _mark(line: Any, col: Any) -> Mark:
    if type(line) is not int or type(col) is not int:
        raise TypeError(line, col)
    return Mark(line, col)
