"""A parsed policy: plain dicts, lists and scalars that remember their line and column.

The YAML reader (policy.source) builds these; the compiler reads them. They live apart
from the reader so that a policy read back from the cache (policy.cache) never loads
the YAML parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based position in the policy file."""

    line: int
    col: int


class YMap(dict[str, Any]):
    """A mapping that knows where it, each key and each value stand in the file."""

    __slots__ = ("key_marks", "mark", "value_marks")

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[str, Mark] = {}
        self.value_marks: dict[str, Mark] = {}

    def at(self, key: str) -> Mark:
        """Where the value of ``key`` stands, or the mapping itself if the key is absent."""
        return self.value_marks.get(key, self.mark)

    def key_at(self, key: str) -> Mark:
        return self.key_marks.get(key, self.mark)


class YList(list[Any]):
    """A sequence that knows where it and each item stand in the file."""

    __slots__ = ("mark", "marks")

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.marks: list[Mark] = []

    def at(self, index: int) -> Mark:
        return self.marks[index] if index < len(self.marks) else self.mark
