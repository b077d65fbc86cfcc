"""Starting HTTP servers for the tests: mcpwall's listener, and test servers on free
ports, each waited for and stopped at the end."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import MCPWALL
from tests.helpers import wait_for_port

TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A test server (not mcpwall) listening on ``port``."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=TIMEOUT)


class Listener:
    """mcpwall --transport http as a process; ``url`` once it listens."""

    def __init__(self, policy: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [MCPWALL, "-c", str(policy), "--transport", "http", "--state-dsn", "memory:", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.url = ""
        found = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    self.url = match.group(1)
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(TIMEOUT) or not self.url:
            self.stop()
            raise AssertionError("mcpwall did not start listening:\n" + "".join(self.log))

    @property
    def stderr(self) -> str:
        return "".join(self.log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never left running after the test
            self.process.wait(timeout=TIMEOUT)
            raise AssertionError(f"mcpwall did not stop within {TIMEOUT:g} s of SIGTERM") from None
        finally:
            self._reader.join(timeout=TIMEOUT)
            # Closed under a reader still blocked (a server that outlived mcpwall holds
            # the pipe), it would wait for the reader for ever.
            if self.process.stderr is not None and not self._reader.is_alive():
                self.process.stderr.close()
        return code


@contextmanager
def listener(policy: Path, *args: str) -> Iterator[Listener]:
    started = Listener(policy, *args)
    try:
        yield started
    finally:
        started.stop()
