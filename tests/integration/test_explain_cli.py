"""`dnsfilter explain` as a user runs it, and its answer against the one `serve` really sends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.integration.harness import DnsFilter, demo_list
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration

APPS = demo_list(
    "apps",
    [
        {
            "domain": "banned.example.test",
            "note": "the app's own apex",
            "evidence": "https://example.org/apps",
            "added": "2026-11-27",
        },
        {"domain": "canary.example.test", "evidence": "test", "mode": "nxdomain"},
    ],
    exceptions=[{"domain": "ok.banned.example.test", "evidence": "https://example.org/ok"}],
)
OTHER = demo_list("other", [{"domain": "other.example.test", "evidence": "test"}])


def config(upstream: str = "192.0.2.53") -> dict[str, Any]:
    return {
        "server": {"listen": ["127.0.0.1:0"]},
        "metrics": {"enabled": False},
        "upstream": {"servers": [upstream], "health_check_interval": 0},
        "forward_zones": {"corp.test": ["192.0.2.54"]},
        "networks": {"loopback": ["127.0.0.0/8"], "office": ["10.0.0.0/8"]},
        "lists": {"apps": {"file": "apps.yaml"}, "other": {"file": "other.yaml"}},
        "allowlist": ["fine.banned.example.test"],
        "policies": {
            "default": {"networks": ["loopback"], "lists": ["apps", "other"], "ttl": 30},
            "office": {"networks": ["office"], "lists": ["apps"], "ttl": 30},
        },
    }


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "apps.yaml").write_text(yaml.safe_dump(APPS))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(OTHER))
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config()))
    return path


def explain(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", "explain", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_blocked_name_shows_list_entry_evidence_mode_and_answer(config_path: Path) -> None:
    result = explain(config_path, "a.banned.example.test")
    assert result.returncode == 0, result.stderr
    apps = config_path.parent / "apps.yaml"
    assert result.stdout == (
        "name:     a.banned.example.test (A)\n"
        "client:   127.0.0.1: network loopback, policy default (lists: apps, other; "
        "mode null, ttl 30)\n"
        "verdict:  block\n"
        f"matched:  list apps, entry banned.example.test (line 4 of {apps})\n"
        "          note:     the app's own apex\n"
        "          evidence: https://example.org/apps\n"
        "          added:    2026-11-27\n"
        "mode:     null (the policy's mode)\n"
        "answer:   NOERROR\n"
        "          a.banned.example.test.  30      IN      A       0.0.0.0\n"
        "          EDE 15 (Blocked): apps\n"
    )


def test_an_entry_mode_gives_its_own_answer(config_path: Path) -> None:
    result = explain(config_path, "Canary.Example.Test.", "--qtype", "aaaa")
    assert result.returncode == 0, result.stderr
    assert "name:     canary.example.test (AAAA)\n" in result.stdout
    assert "mode:     nxdomain (the entry's own mode)\n" in result.stdout
    assert "answer:   NXDOMAIN\n" in result.stdout
    assert "IN      SOA" in result.stdout and "; authority" in result.stdout


def test_an_exception_overrides_its_lists_entry(config_path: Path) -> None:
    result = explain(config_path, "x.ok.banned.example.test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        "verdict:  allow\n"
        "answer:   resolved normally, upstream: 192.0.2.53:53\n"
        "override: exception ok.banned.example.test (line 12) of list apps overrides its "
        "entry banned.example.test (line 4)\n"
        "also matched:\n"
        "  list apps entry banned.example.test (line 4)\n"
        "  list apps exception ok.banned.example.test (line 12)\n"
    )


def test_the_allowlist_overrides_every_list(config_path: Path) -> None:
    result = explain(config_path, "fine.banned.example.test")
    assert result.returncode == 0, result.stderr
    assert "verdict:  allow\n" in result.stdout
    assert "allowlist: fine.banned.example.test\n" in result.stdout
    assert (
        f"override: allowlist entry fine.banned.example.test ({config_path}) overrides list "
        "apps entry banned.example.test (line 4)\n"
    ) in result.stdout


def test_a_list_the_clients_policy_does_not_enforce(config_path: Path) -> None:
    result = explain(config_path, "other.example.test", "--client", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert "client:   10.1.2.3: network office, policy office (lists: apps;" in result.stdout
    assert "verdict:  allow\n" in result.stdout
    assert (
        "  list other entry other.example.test (line 4, not enforced for this client)\n"
        in result.stdout
    )


def test_forward_zones_are_named(config_path: Path) -> None:
    result = explain(config_path, "intranet.corp.test", "--qtype", "MX")
    assert "answer:   resolved normally, forward zone corp.test: 192.0.2.54:53\n" in result.stdout


def test_a_client_in_no_network_is_refused(config_path: Path) -> None:
    result = explain(config_path, "banned.example.test", "--client", "2001:db8::1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "name:     banned.example.test (A)\n"
        "client:   2001:db8::1: in no configured network\n"
        "verdict:  refuse\n"
        "answer:   REFUSED\n"
        "          EDE 18 (Prohibited): client is not in a configured network\n"
    )


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        pytest.param(["bad..name"], "invalid name 'bad..name'", id="name"),
        pytest.param(["x.test", "--client", "10.0.0"], "invalid client address", id="client"),
        pytest.param(["x.test", "--qtype", "BOGUS"], "unknown query type 'BOGUS'", id="qtype"),
    ],
)
def test_bad_input_exits_2(config_path: Path, args: list[str], stderr: str) -> None:
    result = explain(config_path, *args)
    assert result.returncode == 2
    assert stderr in result.stderr


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "dnsfilter.yaml"
    path.write_text("lists: {apps: {file: missing.yaml}}\n")
    result = explain(path, "x.test")
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("a.banned.example.test", "A"),
        ("a.banned.example.test", "AAAA"),
        ("a.banned.example.test", "TXT"),
        ("canary.example.test", "A"),
        ("other.example.test", "A"),
    ],
)
def test_the_explained_answer_is_the_one_serve_sends(
    tmp_path: Path, nsd_upstream: NsdServer, name: str, qtype: str
) -> None:
    server = DnsFilter(tmp_path, config(nsd_upstream.address), {"apps": APPS, "other": OTHER})
    with server:
        real = server.udp(name, qtype, edns=True)
        result = explain(tmp_path / "dnsfilter.yaml", name, "--qtype", qtype, "--format", "json")
    assert result.returncode == 0, result.stderr
    explained = json.loads(result.stdout)
    assert explained["verdict"] == "block"
    answer = explained["answer"]
    assert answer["rcode"] == dns.rcode.to_text(real.rcode())
    got = sorted(" ".join(record.split()) for record in answer["answer"])
    sent = sorted(
        f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in real.answer
        for rd in rrset
    )
    assert got == sent
    assert len(answer["authority"]) == len(real.authority)
    assert explained["entry"]["domain"] in name
