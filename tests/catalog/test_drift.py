"""The catalogue against the real servers it describes: each one is started (all side
by side) and its tools/list must be what its catalogue file says, tool by tool: the same
names, the same annotations, the same description and input schema, from the pinned
package version. A difference fails with what differs and the command that refreshes
the file (after which the judgement of a changed tool needs a fresh look)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
import yaml

from tests.catalog.real_servers import (
    REAL_SERVERS,
    REFRESH,
    SERVERS_VENV,
    Listing,
    RealServer,
    declared,
    list_all,
)

# In CI the servers must be there (.ci/run installs them); elsewhere a checkout without
# the PyPI servers' venv skips rather than fails.
pytestmark = pytest.mark.skipif(
    not (SERVERS_VENV / "bin").is_dir() and os.environ.get("CI") != "true",
    reason=f"no {SERVERS_VENV.name}: pip install -r tests/pypi/servers.txt into it",
)


@pytest.fixture(scope="module")
def listings() -> dict[str, Listing]:
    return anyio.run(list_all, REAL_SERVERS, 20.0)


@pytest.mark.parametrize("server", REAL_SERVERS, ids=[s.key for s in REAL_SERVERS])
def test_the_server_lists_what_its_catalogue_file_says(
    server: RealServer, listings: dict[str, Listing]
) -> None:
    listing = listings[server.key]
    data = yaml.safe_load(server.data_file.read_text())
    differences = drift(server, listing, data)
    assert not differences, (
        f"{server.key} differs from {server.data_file.name}:\n  "
        + "\n  ".join(differences)
        + f"\nrun `{REFRESH} {server.key}`, then review the judgement of each changed tool"
    )


def drift(server: RealServer, listing: Listing, data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    if data.get("package") != server.pinned():
        found.append(f"the file was read from {data.get('package')}, {server.pinned()} is pinned")
    if (listing.name, listing.version) != (data.get("server"), data.get("version")):
        found.append(
            f"the server is {listing.name} {listing.version}, the file says "
            f"{data.get('server')} {data.get('version')}"
        )
    catalogued: Mapping[str, Any] = data.get("tools") or {}
    listed = {str(tool["name"]): tool for tool in listing.tools}
    found += [
        f"new tool {name}: not in the catalogue" for name in sorted(set(listed) - set(catalogued))
    ]
    found += [f"tool {name} is no longer listed" for name in sorted(set(catalogued) - set(listed))]
    for name in sorted(set(listed) & set(catalogued)):
        now, then = declared(listed[name]), catalogued[name].get("declared") or {}
        found += [f"{name}: {what}" for what in _changes(now, then)]
    return found


def _changes(now: Mapping[str, Any], then: Mapping[str, Any]) -> list[str]:
    changes: list[str] = []
    for key in sorted(set(now) | set(then)):
        if key in ("annotations", "input"):
            new, old = now.get(key) or {}, then.get(key) or {}
            changes += [
                f"{key}.{item} is {new.get(item)!r}, the catalogue {old.get(item)!r}"
                for item in sorted(set(new) | set(old))
                if new.get(item) != old.get(item)
            ]
        elif now.get(key) != then.get(key):
            changes.append(f"{key} is {now.get(key)!r}, the catalogue {then.get(key)!r}")
    return changes


def test_every_server_was_read_from_its_own_pinned_package() -> None:
    """A catalogue file not produced by a refresh (typed by hand) has no package line or
    one that names another version."""
    for server in REAL_SERVERS:
        data = yaml.safe_load(server.data_file.read_text())
        assert data["package"] == server.pinned(), server.key
