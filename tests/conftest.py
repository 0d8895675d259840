"""Shared pytest fixtures.

Upstreams (loopback only):
  scripted_upstream   ScriptedUpstream on 127.0.0.1 (function scope): scriptable misbehaviour
  nsd_upstream        NsdServer serving DEFAULT_ZONES (session scope): a real authoritative server

Plugins: tests.skipguard — with CI set a skip fails; every run ends with a ``skipped:`` line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes import ScriptedUpstream
from tests.nsd import DEFAULT_ZONES, NsdServer

pytest_plugins = ["tests.skipguard"]


@pytest.fixture(scope="session", autouse=True)
def private_state_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every default state and cache path (audit db, list cache) out of the home directory.

    dnsfilter honours systemd's STATE_DIRECTORY and CACHE_DIRECTORY; subprocesses inherit them.
    """
    saved = {key: os.environ.get(key) for key in ("STATE_DIRECTORY", "CACHE_DIRECTORY")}
    os.environ["STATE_DIRECTORY"] = str(tmp_path_factory.mktemp("state"))
    os.environ["CACHE_DIRECTORY"] = str(tmp_path_factory.mktemp("cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    """A running ScriptedUpstream with only the example.test SOA; tests ``add`` their records."""
    with ScriptedUpstream(host="127.0.0.1") as upstream:
        yield upstream
        assert upstream.errors == [], "ScriptedUpstream hit internal errors"


@pytest.fixture(scope="session")
def nsd_upstream() -> Iterator[NsdServer]:
    """NSD on 127.0.0.1 serving example.test (DEFAULT_ZONE) and corp.test (CORP_ZONE)."""
    with NsdServer(zones=DEFAULT_ZONES, host="127.0.0.1") as server:
        yield server
