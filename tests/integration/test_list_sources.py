"""`--list` end to end: the real `dnsfilter serve` / `check-config` with hosts files and URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.edns
import dns.message
import pytest
import yaml

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config
from tests.integration.harness import rdata_texts
from tests.unit.lists.test_sources import LIST_HOST, ListServer

pytestmark = pytest.mark.integration


def _ede(reply: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(o.code, o.text) for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def test_serve_list_flag_blocks_names_from_a_hosts_file(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    hosts = tmp_path / "extra.txt"
    hosts.write_text("127.0.0.1 localhost\n0.0.0.0 fromfile.example.test\n")
    scripted_upstream.add("allowed.example.test", "A", "192.0.2.7")
    server = start_dnsfilter(
        base_config([scripted_upstream.address]), args=["--list", f"hosts:{hosts}"]
    )
    for name in ("fromfile.example.test", "deep.fromfile.example.test"):
        reply = server.udp(name, "A", edns=True)
        assert rdata_texts(reply, "A") == ["0.0.0.0"]
        assert _ede(reply) == [(dns.edns.EDECode.BLOCKED, "extra")]
    # The config's own list still applies, and other names are forwarded.
    assert rdata_texts(server.udp("banned.example.test"), "A") == ["0.0.0.0"]
    assert rdata_texts(server.udp("allowed.example.test"), "A") == ["192.0.2.7"]
    assert [c.qname for c in scripted_upstream.calls] == ["allowed.example.test"]


def test_serve_list_flag_downloads_through_the_upstream_and_keeps_a_copy(
    start_dnsfilter: StartDnsFilter,
    scripted_upstream: ScriptedUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    scripted_upstream.add(LIST_HOST, "A", "127.0.0.1")
    config = base_config([scripted_upstream.address])
    with ListServer(body=b"0.0.0.0 remote.example.test\n") as lists:
        url = lists.url("/feed.hosts")
        server = start_dnsfilter(config, args=["--list", url])
        reply = server.udp("remote.example.test", "A", edns=True)
        assert rdata_texts(reply, "A") == ["0.0.0.0"]
        assert _ede(reply) == [(dns.edns.EDECode.BLOCKED, "feed")]
        assert len(lists.requests) == 1
        assert lists.requests[0].host == f"{LIST_HOST}:{lists.port}"
        assert server.stop() == 0
    # The list server's name came from the configured upstream, not the system resolver.
    assert [(c.qname, c.qtype) for c in scripted_upstream.calls] == [(LIST_HOST, "A")]
    assert len(list((tmp_path / "cache" / "lists").glob("feed-*.list"))) == 1

    # A restart with the list server gone still blocks, from the last good copy.
    again = start_dnsfilter(config, args=["--list", url])
    reply = again.udp("remote.example.test", "A")
    assert rdata_texts(reply, "A") == ["0.0.0.0"]


def _check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_list_flag(tmp_path: Path, scripted_upstream: ScriptedUpstream) -> None:
    config = tmp_path / "dnsfilter.yaml"
    document = base_config(
        [scripted_upstream.address],
        lists={},
        policies={"default": {"networks": ["loopback"], "lists": []}},
    )
    config.write_text(yaml.safe_dump(document))
    good = tmp_path / "good.txt"
    good.write_text("a.example\nb.example\nexample\n")
    result = _check_config(str(config), "--list", f"plain:{good}", "--list", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK (1 networks, 1 policies, 2 lists with 4 entries)\n"
    warning = f"{good}:3: 'example' is a single label (a top-level domain); skipped"
    assert result.stderr.splitlines() == [warning, warning]

    bad = tmp_path / "bad.hosts"
    bad.write_text("0.0.0.0 ok.example\n0.0.0.0 bad..example\n")
    result = _check_config(str(config), "--list", str(bad))
    # A third-party list skips the line it cannot read, says so, and counts it.
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{config}: OK (1 networks, 1 policies, 1 lists with 1 entries; "
        "1 unreadable lines skipped)\n"
    )
    assert result.stderr.splitlines() == [
        f"{bad}:2: 'bad..example' has an empty label; line skipped"
    ]
    # Only a file with no readable line at all fails.
    bad.write_text("0.0.0.0 bad..example\n")
    result = _check_config(str(config), "--list", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{bad}:1: 'bad..example' has an empty label"]


def test_serve_refuses_a_bad_list_flag(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dnsfilter", "serve", "--list", "plain:"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["--list: nothing after the format in 'plain:'"]
