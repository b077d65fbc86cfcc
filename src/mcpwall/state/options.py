"""Where the counters are kept, as the command line says: known before anything is
opened, so that the command line can be checked before the server is started."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcpwall.engine.gate import Gate


@dataclass(frozen=True, slots=True)
class StateOptions:
    """Where the counters are kept, as the command line says."""

    dsn: str | None = None
    directory: str | None = None
    prefix: str = ""
    fail_open: bool = False

    def gate(self) -> Gate:
        from mcpwall.engine.gate import Gate
        from mcpwall.state import open_store

        return Gate(lambda: open_store(self.dsn, self.directory), self.fail_open, self.prefix)

    def describe(self) -> str:
        if self.dsn is None:
            return f"sqlite:{Path(self.directory or '~/.mcpwall').expanduser()}/state.sqlite"
        return re.sub(r"//[^@/]*@", "//***@", self.dsn)  # never log a password
