"""Hot reload from a Kubernetes ConfigMap volume, without a cluster.

kubelet lays a ConfigMap volume out as a timestamped directory holding the files, a
``..data`` symlink to it and, per key, a symlink ``policy.yaml -> ..data/policy.yaml``.
An update writes a new timestamped directory, points a ``..data_tmp`` symlink at it,
renames that over ``..data`` (one atomic step) and removes the old directory. Here the
same steps are made by hand under a real mcpwall reading ``policy.yaml`` in that
directory, and the test waits for the new policy to judge the next call.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import server_cmd
from tests.helpers import RawProxy, call, initialize

ALLOW = """\
version: "1"
tools:
  echo:
    rules: []
"""
DENY = """\
version: "1"
tools:
  echo:
    rules:
      - {name: swapped-in, action: deny, reason: "denied by the swapped-in policy"}
"""
DEADLINE = 15.0


class ConfigMapVolume:
    """A directory laid out as kubelet lays out a ConfigMap volume with one key."""

    def __init__(self, root: Path, text: str, key: str = "policy.yaml") -> None:
        self.root = root
        self.key = key
        self.generation = 0
        root.mkdir()
        self.current = self._write_version(text)
        (root / "..data").symlink_to(self.current.name)
        (root / key).symlink_to(Path("..data") / key)

    def _write_version(self, text: str) -> Path:
        self.generation += 1
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        directory = self.root / f"..{stamp}.{self.generation:09d}"
        directory.mkdir()
        (directory / self.key).write_text(text)
        return directory

    def publish(self, text: str) -> None:
        """kubelet's update: new directory, ..data_tmp, rename over ..data, old one gone."""
        old = self.current
        self.current = self._write_version(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(self.current.name)
        os.rename(tmp, self.root / "..data")
        shutil.rmtree(old)

    @property
    def path(self) -> Path:
        return self.root / self.key


def _denied(reply: dict[str, Any]) -> bool:
    return bool(reply["result"].get("isError"))


def _wait_for_verdict(proxy: RawProxy, denied: bool, first_id: int) -> int:
    """Call echo until its verdict is ``denied``; the number of calls it took."""
    deadline = time.monotonic() + DEADLINE
    request_id = first_id
    while True:
        reply = proxy.request(call(request_id, "echo", {"n": request_id}))
        request_id += 1
        if _denied(reply) == denied:
            return request_id
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the swapped policy did not apply within {DEADLINE} s:\n{proxy.stderr}"
            )
        time.sleep(0.02)


def test_a_configmap_update_by_symlink_swap_is_reloaded(
    raw_proxy: Callable[..., RawProxy], tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "policy", ALLOW)
    assert volume.path.is_symlink() and os.readlink(volume.path) == "..data/policy.yaml"
    proxy = raw_proxy(
        volume.path,
        server_cmd("raw_recorder.py"),
        "--state-dsn",
        "memory:",
        "--events-dir",
        str(tmp_path / "events"),
    )
    initialize(proxy)
    assert not _denied(proxy.request(call(1, "echo")))

    volume.publish(DENY)
    next_id = _wait_for_verdict(proxy, denied=True, first_id=2)
    reply = proxy.request(call(next_id, "echo"))
    assert reply["result"]["_meta"]["mcpwall/decision"]["rule"] == "swapped-in"

    # And back: a second swap, after the first version's directory is gone.
    volume.publish(ALLOW)
    _wait_for_verdict(proxy, denied=False, first_id=next_id + 1)
    assert sorted(p.name for p in volume.root.iterdir()) == sorted(
        ["..data", volume.key, volume.current.name]
    )
    assert proxy.stderr.count("reloaded the policy") == 2
