"""Test helpers that drive mcpwall at the byte level, where the SDK client cannot go."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

TIMEOUT = 10.0


class RawProxy:
    """mcpwall as a child process; lines in, lines out, every wait bounded."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._reading = threading.Event()  # cleared: a client that stops reading stdout
        self._reading.set()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while self._reading.wait():
            try:
                line = self.process.stdout.readline()
            except (ValueError, OSError):  # closed under this thread when the test ends
                break
            if not line:
                break
            self._lines.put(line)
        self._lines.put(None)

    def stop_reading(self) -> None:
        """Read nothing more from mcpwall's stdout (after, at most, one more line)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        # The pipe may be closed under this thread when the test ends.
        with contextlib.suppress(ValueError, OSError):
            for line in iter(self.process.stderr.readline, b""):
                self.stderr_lines.append(line.decode("utf-8", "replace"))

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def send(self, message: Any) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(data if data.endswith(b"\n") else data + b"\n")
        self.process.stdin.flush()

    def recv_raw(self, timeout: float = TIMEOUT) -> bytes:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no message from mcpwall within {timeout} s; stderr:\n{self.stderr}"
            ) from None
        if line is None:
            raise AssertionError(f"mcpwall closed its stdout; stderr:\n{self.stderr}")
        return line

    def recv(self, timeout: float = TIMEOUT) -> Any:
        return json.loads(self.recv_raw(timeout))

    def request(self, message: dict[str, Any]) -> Any:
        self.send(message)
        return self.recv()

    def no_more(self, wait: float = 0.3) -> None:
        """Assert that nothing else arrives within ``wait`` seconds."""
        try:
            line = self._lines.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message: {line!r}")

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.process.wait(timeout=timeout)

    def eof(self, timeout: float = TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._lines.get(timeout=0.1) is None:
                    return True
            except queue.Empty:
                continue
        return False

    def close(self) -> None:
        """Stop mcpwall and the server it started. A server that a failed test left
        waiting (it reads nothing, so it never sees its stdin close) would keep mcpwall's
        stderr open, which it inherited, and closing that pipe under its reader thread
        would wait for the reader for ever."""
        if self.process.poll() is None:
            servers = _children(self.process.pid)
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
            for pid in servers:  # each in a session of its own, led by itself
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr_reader.join(timeout=TIMEOUT)
        if self.process.stderr is not None and not self._stderr_reader.is_alive():
            self.process.stderr.close()


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listed:
                found += [int(child) for child in listed.read().split()]
    return found


def wait_for(
    predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "the condition"
) -> None:
    """Wait, at most ``timeout`` seconds, until ``predicate`` holds. Files and pipes give
    no event to block on portably, so this polls: its pause is the only sleep in the
    tests, and it never stands in for the thing waited on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come true within {timeout} s")
        time.sleep(0.01)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """``wait_for`` from async code: it polls in a worker thread, so the loop goes on."""
    await anyio.to_thread.run_sync(wait_for, predicate, timeout)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 15
) -> None:
    """Wait until something accepts connections on ``port``; fail at once if the
    ``process`` meant to listen there has exited."""

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    wait_for(listening, timeout)


def release(wire: Path, count: int = 1) -> None:
    """Let ``count`` held calls (the raw recorder's ``slow`` with ``{"hold": true}``, and
    ``block``) be answered, on every raw recorder writing ``wire``. Each recorder reads a
    FIFO of its own beside that file and answers one held call per byte, so a release
    that comes before the call is not lost."""
    live = 0
    for fifo in wire.parent.glob(f"{wire.name}.release-*"):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: that recorder has exited
                continue
            raise
        try:
            os.write(fd, b"r" * count)
        finally:
            os.close(fd)
        live += 1
    assert live, f"no raw recorder is running with MCPWALL_TEST_WIRE={wire}"


def pipe_full(pipe: Any) -> bool:
    """Whether a pipe holds about as many unread bytes as it can: its reader has stopped.
    A pipe is a ring of pages; a reader that stopped inside the first and a writer that
    wants its small write whole (PIPE_BUF) can leave up to a page free at each end."""
    fd = pipe.fileno()
    unread = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    return unread > fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) - 2 * select.PIPE_BUF


def held_back(pipe: Any, pid: int) -> Callable[[], bool]:
    """For ``wait_for``: the pipe into process ``pid`` is full, and the process has read
    nothing since the last time this was asked. A full pipe alone can be a reader busy
    with a large message for a moment, that reads on afterwards."""
    last_read = -1

    def check() -> bool:
        nonlocal last_read
        read = _proc_field(pid, "io", "rchar:")
        stopped, last_read = read == last_read, read
        return stopped and pipe_full(pipe)

    return check


def rss_mb(pid: int) -> float:
    """A process's resident memory, in MiB, from /proc."""
    return _proc_field(pid, "status", "VmRSS:") / 1024


def _proc_field(pid: int, name: str, field: str) -> int:
    """The number after ``field`` in /proc/PID/NAME."""
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/{name}")


def initialize(proxy: RawProxy, version: str = "2025-11-25", request_id: int = 0) -> Any:
    reply = proxy.request(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "1"},
            },
        }
    )
    proxy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    # A round trip, so that the notification has surely reached the server.
    proxy.request({"jsonrpc": "2.0", "id": f"sync-{request_id}", "method": "ping"})
    return reply


def call(request_id: Any, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}},
    }


def received(wire: Path) -> list[bytes]:
    """Every line the raw recorder received, exactly as received."""
    if not wire.exists():
        return []
    # Lines end at a newline only: a carriage return is spacing inside a JSON line.
    return [line + b"\n" for line in wire.read_bytes().split(b"\n")[:-1]]


def received_calls(wire: Path) -> list[Any]:
    """The name of every tools/call that reached the server, at any depth of any line
    (a batch, a batch inside a batch), each line read as a server would: it must have
    one meaning only."""
    names: list[Any] = []
    for line in received(wire):
        names.extend(
            call["params"]["name"]
            for call in _tool_calls(json.loads(line, object_pairs_hook=_one_meaning))
        )
    return names


def _one_meaning(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(set(keys)) == len(keys), f"the server received duplicate keys: {keys}"
    return dict(pairs)


def _tool_calls(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [found for item in value for found in _tool_calls(item)]
    if isinstance(value, dict) and value.get("method") == "tools/call":
        return [value]
    return []


class RedisServer:
    """A real redis-server on a free loopback port, in a directory of its own, with no
    persistence: stopped, it forgets; started again, it is empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError(
                "redis-server is not installed: `bash .ci/run` installs it "
                "(apt-get install redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: self.command("PING") == b"+PONG\r\n",
            what=f"redis-server answering on port {self.port}",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=TIMEOUT)
        self.process = None

    def command(self, *words: str) -> bytes | None:
        """One inline command over a plain socket; None if nothing listens."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(" ".join(words).encode() + b"\r\n")
                return conn.recv(65536)
        except OSError:
            return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def audit_events(home: Path, kind: str) -> list[dict[str, Any]]:
    """The audit log's events of one kind, under the test's HOME, in order."""
    return [
        event
        for path in sorted((home / ".mcpwall" / "events").glob("*.jsonl"))
        for event in map(json.loads, path.read_text().splitlines())
        if event["type"] == kind
    ]


# Messages with two keys in one object that a Go server reads as one: encoding/json
# matches keys to struct fields ignoring case, folding the long s (U+017F) to "s" and
# the Kelvin sign (U+212A) to "k", and keeps the last. Each must be refused whole.
GO_FOLDED = [
    b'{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call",'
    b'"params":{"name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"pods_delete"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"replicas":1,"Replicas":500}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"arguments":{"resource":{"kind":"Pod","\\u212aind":"Secret"}}}}',
    (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
        '"arguments":{"resource":{"kind":"Pod","\u212aind":"Secret"}}}}'
    ).encode(),
    (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
        '"arguments":{"ok":true},"argument\u017f":{"namespace":"kube-system"}}}'
    ).encode(),
    b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
    b'"NAME":"pods_delete"}}]',
]
