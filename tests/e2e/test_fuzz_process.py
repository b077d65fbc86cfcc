"""The relay's fuzz properties again, against mcpwall as a real process in front of the
raw recorder: fewer examples (each is a round trip through two processes), the same
streams (tests/strategies.py), one mcpwall for all of them, as one long agent session.

After each stream, a ping: its answer must be the next thing after the answers owed for
the stream, so the session is still in step. At the end, the recorder's record shows
that only calls the policy allows reached the server.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from itertools import count
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from mcpwall.proxy.framing import DEFAULT_MAX_MESSAGE
from tests.conftest import server_cmd
from tests.helpers import RawProxy, received
from tests.strategies import (
    POLICY,
    STREAMS,
    answered,
    answers_owed,
    forwarded_calls_are_allowed,
)


def test_any_stream_through_the_process(
    raw_proxy: Callable[..., RawProxy], write_policy: Callable[..., Path], wire: Path
) -> None:
    proxy = raw_proxy(write_policy(POLICY), server_cmd("raw_recorder.py"), "--state-dsn", "memory:")
    sentinels = count()

    @settings(
        max_examples=60,
        deadline=5000,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(stream=STREAMS)
    def run(stream: list[bytes]) -> None:
        owed = sum((answers_owed(line, DEFAULT_MAX_MESSAGE) for line in stream), Counter())
        sentinel = f"sentinel-{next(sentinels)}"
        proxy.send(
            b"".join(stream)
            + json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}).encode()
        )
        got: Counter[str] = Counter()
        while True:
            line = proxy.recv_raw()
            if json.loads(line) == {"jsonrpc": "2.0", "id": sentinel, "result": {}}:
                break
            got += answered(line)
        assert got == owed

    run()
    proxy.no_more()
    for line in received(wire):
        forwarded_calls_are_allowed(line)
    proxy.close_stdin()
    assert proxy.wait() == 0
