"""Hot reload: SIGHUP and file changes swap lists atomically; a bad reload keeps the old."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import APPS_LIST, StartDnsFilter, base_config
from tests.integration.harness import DnsFilter, demo_list, rdata_texts, wait_until
from tests.nsd import NsdServer

pytestmark = pytest.mark.integration


def _write_apps(path: Path, *domains: str) -> None:
    entries = [{"domain": d, "evidence": "test"} for d in domains]
    path.write_text(yaml.safe_dump(demo_list("apps", entries)))


def _reloads(server: DnsFilter) -> int:
    return server.log.count("reloaded (")


def _hup(server: DnsFilter) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)


def test_sighup_reloads_lists_and_config(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer, tmp_path: Path
) -> None:
    config = base_config([nsd_upstream.address], reload={"watch_files": False})
    server = start_dnsfilter(config)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    _write_apps(tmp_path / "apps.yaml", "www.example.test")
    _hup(server)
    assert wait_until(lambda: _reloads(server) == 1)
    assert rdata_texts(server.udp("www.example.test")) == ["0.0.0.0"]
    assert rdata_texts(server.udp("banned.example.test")) != ["0.0.0.0"], "dropped entry"
    # The config itself is read again too: an allowlist entry now lets the name through.
    config["allowlist"] = ["www.example.test"]
    (tmp_path / "dnsfilter.yaml").write_text(yaml.safe_dump(config))
    _hup(server)
    assert wait_until(lambda: _reloads(server) == 2)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]


def test_failed_reload_keeps_the_lists_in_use(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer, tmp_path: Path
) -> None:
    server = start_dnsfilter(base_config([nsd_upstream.address], reload={"watch_files": False}))
    (tmp_path / "apps.yaml").write_text("name: apps\ndomains: [NO]\n")
    _hup(server)
    assert wait_until(lambda: "failed, keeping the lists in use" in server.log)
    assert rdata_texts(server.udp("banned.example.test")) == ["0.0.0.0"]
    assert server.metric("dnsfilter_list_reload_failures_total", list="apps") == 1
    assert server.metric("dnsfilter_list_reload_failures_total", list="other") == 0
    assert "apps.yaml:2: domains[0]: 'NO', which YAML reads as the boolean false" in server.log


def test_changed_list_file_is_picked_up(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer, tmp_path: Path
) -> None:
    config = base_config([nsd_upstream.address], reload={"watch_interval": 0.2})
    server = start_dnsfilter(config)
    assert rdata_texts(server.udp("www.example.test")) == ["192.0.2.10"]
    _write_apps(tmp_path / "apps.yaml", "example.test")
    assert wait_until(lambda: _reloads(server) == 1)
    assert rdata_texts(server.udp("www.example.test")) == ["0.0.0.0"]


def test_twenty_reloads_under_load_lose_no_query(
    start_dnsfilter: StartDnsFilter, nsd_upstream: NsdServer, tmp_path: Path
) -> None:
    """dnsperf keeps blocked and forwarded queries flowing while the lists are swapped."""
    server = start_dnsfilter(base_config([nsd_upstream.address], reload={"watch_files": False}))
    queries = tmp_path / "queries.txt"
    queries.write_text(
        "".join(
            f"q{i}.banned.example.test A\nwww.example.test A\nx{i}.wild.example.test A\n"
            for i in range(3000)
        )
    )
    perf = subprocess.Popen(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(server.port), "-d", str(queries),
         "-l", "8", "-Q", "2000", "-t", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        for i in range(20):
            domains = [e["domain"] for e in APPS_LIST["domains"] if isinstance(e, dict)]
            _write_apps(tmp_path / "apps.yaml", *domains, f"extra{i}.example.test")
            _hup(server)
            assert wait_until(lambda n=i + 1: _reloads(server) == n, timeout=5), server.log
            time.sleep(0.1)
        output, _ = perf.communicate(timeout=30)
    finally:
        if perf.poll() is None:
            perf.kill()
            perf.wait()
    sent = int(re.search(r"Queries sent:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"Queries lost:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    assert sent > 10000, output
    assert lost == 0, output
    assert "NOERROR" in output and "SERVFAIL" not in output, output
    assert _reloads(server) == 20
    assert rdata_texts(server.udp("extra19.example.test")) == ["0.0.0.0"]
