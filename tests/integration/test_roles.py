"""Roles and the bypass doors against a real `dnsfilter serve` forwarding to a real NSD.

A policy that chooses roles blocks a download name only when it chose `download`; the
embedded default config answers the Firefox canary NXDOMAIN even though the upstream has
the name, and blocks a Kaspersky country site (downloads are in scope by default).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest
import yaml

from tests.integration.harness import DnsFilter, demo_list, rdata_texts
from tests.nsd import DEFAULT_ZONE, NsdServer

pytestmark = pytest.mark.integration

FULL_CLIENT = "127.0.0.1"
BACKEND_CLIENT = "127.0.0.2"

APPS = demo_list(
    "apps",
    [
        {"domain": "mail.example.test", "role": "backend", "evidence": "https://example.org/"},
        {"domain": "www.example.test", "role": "download", "evidence": "https://example.org/"},
    ],
)


def _zone(origin: str, address: str) -> str:
    return (
        f"$ORIGIN {origin}.\n$TTL 300\n"
        f"@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 900 604800 60\n"
        f"@ IN NS ns1.{origin}.\nns1 IN A 192.0.2.53\n@ IN A {address}\n"
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[NsdServer]:
    """NSD with answers for every name the tests expect dnsfilter to block, so a block is
    dnsfilter's doing and not a missing name."""
    zones = {
        "example.test": DEFAULT_ZONE,
        "use-application-dns.net": _zone("use-application-dns.net", "192.0.2.80"),
        "kaspersky.de": _zone("kaspersky.de", "192.0.2.81"),
        "dns.google": _zone("dns.google", "192.0.2.82"),
    }
    with NsdServer(zones=zones, host="127.0.0.1") as server:
        yield server


def test_a_policy_blocks_a_download_name_only_when_it_chose_download(
    tmp_path: Path, upstream: NsdServer
) -> None:
    config = {
        "server": {"listen": ["127.0.0.1:0"]},
        "upstream": {"servers": [upstream.address]},
        "networks": {"full": [f"{FULL_CLIENT}/32"], "backend_only": [f"{BACKEND_CLIENT}/32"]},
        "lists": {"apps": {"file": str(tmp_path / "apps.yaml")}},
        "policies": {
            "full": {"networks": ["full"], "lists": ["apps"]},
            "backend_only": {
                "networks": ["backend_only"],
                "lists": [{"list": "apps", "roles": ["backend"]}],
            },
        },
    }
    with DnsFilter(tmp_path, config, {"apps": APPS}) as server:
        # Every role: the download name is blocked with the backend one.
        assert rdata_texts(server.udp("www.example.test", source=FULL_CLIENT)) == ["0.0.0.0"]
        assert rdata_texts(server.udp("mail.example.test", source=FULL_CLIENT)) == ["0.0.0.0"]
        # Backend only: the download name resolves upstream, the backend one stays blocked.
        reply = server.udp("www.example.test", source=BACKEND_CLIENT)
        assert rdata_texts(reply) == ["192.0.2.10"]
        assert rdata_texts(server.udp("mail.example.test", source=BACKEND_CLIENT)) == ["0.0.0.0"]


def test_the_default_config_closes_the_bypass_doors(tmp_path: Path, upstream: NsdServer) -> None:
    args = ["--listen", "127.0.0.1:0", "--upstream", upstream.address]
    with DnsFilter(tmp_path, None, args=args) as server:
        canary = server.udp("use-application-dns.net")
        assert canary.rcode() == dns.rcode.NXDOMAIN
        assert canary.answer == []
        assert rdata_texts(server.udp("dns.google")) == ["0.0.0.0"]
        assert rdata_texts(server.udp("www.kaspersky.de")) == ["0.0.0.0"]
        # The upstream really has these names: an allowed name from it still resolves.
        assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_explain_shows_the_role_and_the_rejection_on_the_default_config() -> None:
    storefront = _cli("explain", "www.kaspersky.de")
    assert storefront.returncode == 0, storefront.stderr
    assert "matched:  list kaspersky, entry kaspersky.de (line " in storefront.stdout
    assert "          role:     storefront\n" in storefront.stdout
    rejected = _cli("explain", "mail.qq.com")
    assert rejected.returncode == 0, rejected.stderr
    assert "verdict:  allow\n" in rejected.stdout
    assert "rejected: list wechat does not block qq.com (line " in rejected.stdout
    assert "blocking it breaks QQ Mail" in rejected.stdout
    document = json.loads(_cli("explain", "--format", "json", "www.kaspersky.de").stdout)
    assert document["entry"]["roles"] == ["storefront"]


def test_explain_says_when_a_role_is_not_enforced(tmp_path: Path) -> None:
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(APPS))
    config = {
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"apps": {"file": "apps.yaml"}},
        "policies": {
            "default": {
                "networks": ["loopback"],
                "lists": [{"list": "apps", "roles": ["backend"]}],
            }
        },
    }
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _cli("explain", "--config", str(path), "www.example.test")
    assert result.returncode == 0, result.stderr
    assert "(lists: apps (roles: backend); mode null, ttl 60)" in result.stdout
    assert "verdict:  allow\n" in result.stdout
    assert (
        "  list apps entry www.example.test (line 7, role download, its role is not "
        "enforced for this client)\n"
    ) in result.stdout


def test_lists_stats_counts_roles(tmp_path: Path) -> None:
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(APPS))
    config = {
        "networks": {"loopback": ["127.0.0.0/8"]},
        "lists": {"apps": {"file": "apps.yaml"}},
        "policies": {"default": {"networks": ["loopback"], "lists": ["apps"]}},
    }
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config))
    text = _cli("lists", "stats", "--config", str(path))
    assert text.returncode == 0, text.stderr
    assert "  apps: backend 1, download 1; rejected names 0\n" in text.stdout
    document = json.loads(_cli("lists", "stats", "--format", "json", "--config", str(path)).stdout)
    assert document["lists"][0]["roles"] == {"backend": 1, "download": 1}
