"""The command line as a user runs it: check-config, serve's flags and its exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import DnsFilter, rdata_texts
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration


def _dnsfilter(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfilter", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


def test_check_config_accepts_the_embedded_default() -> None:
    result = _dnsfilter("check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "<embedded default config>: OK (1 networks, 1 policies, 4 lists"
    )


def test_show_default_config_round_trips(tmp_path: Path) -> None:
    shown = _dnsfilter("show-default-config")
    assert shown.returncode == 0
    path = tmp_path / "copy.yaml"
    path.write_text(shown.stdout)
    result = _dnsfilter("check-config", str(path))
    assert result.returncode == 0, result.stderr


def test_check_config_reports_every_problem_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "server:\n"
        "  listen: ['127.0.0.1:99999']\n"
        "  colour: blue\n"
        "cache:\n"
        "  enabled: yes\n"
        "networks:\n"
        "  office: ['10.0.0.1/8']\n"
        "policies:\n"
        "  p: {networks: [office, lab], lists: []}\n"
    )
    result = _dnsfilter("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}:2: server.listen[0]: bad port '99999' in '127.0.0.1:99999'",
        f"{path}:3: server.colour: unknown key (known keys: group, listen, max_inflight, "
        "max_tcp_connections, max_tcp_per_client, max_tcp_queued_bytes, max_waiters, "
        "minimal_responses, shutdown_timeout, "
        "tcp_idle_timeout, udp_payload_size, user, workers)",
        f"{path}:5: cache.enabled: write true or false (got 'yes')",
        f"{path}:7: networks.office[0]: 10.0.0.1/8 has host bits set",
        f"{path}:9: policies.p.networks: unknown network 'lab'",
    ]


def test_serve_refuses_a_bad_config_before_binding(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("lists:\n  wechat: {file: missing.yaml}\n")
    result = _dnsfilter("serve", "--config", str(path))
    assert result.returncode == 2
    assert f"{tmp_path}/missing.yaml: cannot read: No such file or directory" in result.stderr


def test_bad_flag_values_exit_2() -> None:
    result = _dnsfilter("serve", "--listen", "127.0.0.1:0", "--upstream", "not-an-address")
    assert result.returncode == 2
    assert result.stderr.strip() == "--upstream: 'not-an-address' is not an IP address"


def test_serve_embedded_default_blocks_shipped_lists(
    tmp_path: Path, nsd_upstream: NsdServer
) -> None:
    """The Quick start's `dnsfilter serve`, on free ports and a loopback upstream."""
    args = [
        *("--listen", "127.0.0.1:0", "--listen", "[::1]:0"),
        *("--upstream", nsd_upstream.address, "--metrics-listen", "127.0.0.1:0"),
    ]
    with DnsFilter(tmp_path, None, args=args) as server:
        assert rdata_texts(server.udp("weixin.qq.com")) == ["0.0.0.0"]
        assert rdata_texts(server.udp("www.tiktok.com", "AAAA"), "AAAA") == ["::"]
        assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    assert server.process is not None and server.process.returncode == 0


def test_listen_failure_is_explained() -> None:
    """Binding an address this host does not have fails with the address in the message."""
    result = _dnsfilter("serve", "--listen", "192.0.2.1:5353", "--upstream", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:5353: Cannot assign requested address" in result.stderr
