"""mcpwall, with a clock around its own code: from the callback of the read that brought
a message to the write that relays it (or answers it), per direction, so that what
mcpwall's code costs shows apart from the wake-ups and pipe hops around it, which on a
small VM swing a round trip by tens of µs with where the scheduler puts each process.

    python benchmarks/codetime.py [mcpwall's arguments]

The samples (ns) are written as JSON to the file named by MCPWALL_CODETIME at exit:
"call" (the agent's message to its write to the server), "answer" (the server's to its
write to the agent), "denial" (the agent's message to mcpwall's own answer). The clock
wraps mcpwall's transport callbacks from outside, so mcpwall itself carries no timing
code; it adds two clock reads and two Python calls per message to what it measures.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from functools import partial
from typing import Any

from mcpwall.cli.main import main
from mcpwall.proxy import child, stdio

clock = time.perf_counter_ns
samples: dict[str, list[int]] = {"call": [], "answer": [], "denial": []}
# When the message being handled was read, per side (0: none being handled).
read_at = {"client": 0, "server": 0}


def timed_read(side: str, original: Any) -> Any:
    def data_received(self: Any, data: bytes) -> None:
        read_at[side] = clock()
        original(self, data)
        read_at[side] = 0

    return data_received


def to_server(original: Any) -> Any:
    def write(self: Any, data: bytes) -> None:
        if read_at["client"]:
            samples["call"].append(clock() - read_at["client"])
        original(self, data)

    return write


def to_client(original: Any) -> Any:
    def write(self: Any, data: bytes) -> None:
        now = clock()
        if read_at["client"]:
            samples["denial"].append(now - read_at["client"])
        elif read_at["server"]:
            samples["answer"].append(now - read_at["server"])
        original(self, data)

    return write


def dump() -> None:
    with open(os.environ["MCPWALL_CODETIME"], "w") as out:
        json.dump(samples, out)


WRAPPED = [
    (stdio, "_ClientReader", "data_received", partial(timed_read, "client")),
    (child, "_StdoutProtocol", "data_received", partial(timed_read, "server")),
    (child, "ServerProcess", "_write", to_server),
    (stdio, "_ClientWriter", "write", to_client),
]
# A version of mcpwall built otherwise (a --baseline) runs untimed: no file, no figures.
if all(hasattr(getattr(module, cls, None), name) for module, cls, name, _ in WRAPPED):
    for module, cls, name, wrap in WRAPPED:
        owner = getattr(module, cls)
        setattr(owner, name, wrap(getattr(owner, name)))
    atexit.register(dump)

if __name__ == "__main__":
    main()
