"""Runs an MCP server and writes every line that reaches its stdin to MCPWALL_TEST_WIRE:
a faithful record of what mcpwall forwarded, for servers that keep none of their own.

Usage: python tap.py COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading


def main() -> int:
    wire = os.environ["MCPWALL_TEST_WIRE"]
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=sys.stdout.buffer)
    assert child.stdin is not None

    def pump() -> None:
        with open(wire, "ab") as record:
            for line in sys.stdin.buffer:
                record.write(line)
                record.flush()
                child.stdin.write(line)
                child.stdin.flush()
        child.stdin.close()

    threading.Thread(target=pump, daemon=True).start()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
