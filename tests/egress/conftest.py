"""Fixtures for the egress tests: a config with documentation-range "banned" prefixes, and the
root check (a skip, which tests/skipguard.py turns into a failure when CI is set)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

#: Clients in configured networks, and one in none.
OFFICE_CLIENT = "10.1.0.5"
LAB_CLIENT = "10.2.0.7"
LAB_CLIENT_V6 = "fd00::7"
STRAY_CLIENT = "172.16.0.9"
#: The resolver clients may use, and dnsfilter's own upstream.
APPROVED = "198.51.100.53"
APPROVED_V6 = "2001:db8::53"
UPSTREAM = "198.51.100.254"
#: A resolver nobody approved.
OTHER_RESOLVER = "198.51.100.99"
OTHER_RESOLVER_V6 = "2001:db8::99"
#: Prefixes the test lists ban: documentation ranges, so nothing real is named.
APPS_PREFIX = "203.0.113.0/24"
APPS_PREFIX_V6 = "2001:db8:bad::/48"
DOH_PREFIX = "192.0.2.128/25"

APPS_LIST: dict[str, Any] = {
    "name": "apps",
    "title": "Apps",
    "vendor": "Test",
    "category": "other",
    "description": "an app list whose names and networks the egress tests look for",
    "references": [{"url": "https://example.org/", "title": "test"}],
    "domains": [{"domain": "banned.example.test", "evidence": "test"}],
    "exceptions": [{"domain": "ok.banned.example.test", "evidence": "test"}],
    "networks": [
        {"prefix": APPS_PREFIX, "evidence": "test"},
        {"prefix": APPS_PREFIX_V6, "evidence": "test"},
    ],
}
DOH_LIST: dict[str, Any] = {
    "name": "doh",
    "title": "DoH",
    "vendor": "Test",
    "category": "bypass",
    "description": "a bypass list: a DoH resolver's name and entry points",
    "references": [{"url": "https://example.org/", "title": "test"}],
    "domains": [{"domain": "doh.example.test", "evidence": "test"}],
    "networks": [{"prefix": DOH_PREFIX, "evidence": "test"}],
}


def egress_config(**egress: Any) -> dict[str, Any]:
    return {
        "server": {"listen": [f"{APPROVED}:53"]},
        "upstream": {"servers": [UPSTREAM]},
        "networks": {"office": ["10.1.0.0/16"], "lab": ["10.2.0.0/16", "fd00::/8"]},
        "lists": {"apps": {"file": "apps.yaml"}, "doh": {"file": "doh.yaml"}},
        "policies": {"default": {"networks": ["office", "lab"], "lists": ["apps", "doh"]}},
        "egress": {"approved_resolvers": [APPROVED, APPROVED_V6], **egress},
    }


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    (directory / "apps.yaml").write_text(yaml.safe_dump(APPS_LIST))
    (directory / "doh.yaml").write_text(yaml.safe_dump(DOH_LIST))
    path = directory / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, egress_config())


def dnsfilter(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The real command line, as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables, packet capture)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool!r} command (Debian packages iproute2, nftables)")
