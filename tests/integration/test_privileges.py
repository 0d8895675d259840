"""Started as root, dnsfilter binds a privileged port and then becomes server.user."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import dns.rcode
import pytest

from tests.fakes import ScriptedUpstream
from tests.integration.conftest import StartDnsFilter, base_config

pytestmark = pytest.mark.integration


def _free_privileged_port() -> int:
    """A port below 1024 free for UDP and TCP on 127.0.0.1 (we are root: we may bind it)."""
    for port in range(1023, 600, -1):
        with contextlib.ExitStack() as stack:
            try:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no privileged port free on 127.0.0.1")


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _assert_sealed(status: dict[str, str]) -> None:
    """No capability in any set, and none to be had again: not even by a set-uid program."""
    assert status["NoNewPrivs"] == "1"
    assert status["CapBnd"] == "0000000000000000"
    assert status["CapAmb"] == "0000000000000000"
    for field in ("CapEff", "CapPrm", "CapInh"):
        assert int(status[field], 16) == 0, field


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to bind a low port and drop it")
def test_root_binds_a_low_port_then_runs_as_the_configured_user(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    port = _free_privileged_port()
    config = base_config(
        [scripted_upstream.address],
        server={"listen": [f"127.0.0.1:{port}"], "user": "nobody"},
    )
    server = start_dnsfilter(config)
    assert server.process is not None
    assert server.addresses == [("127.0.0.1", port)]
    status = _status(server.process.pid)
    uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
    assert status["Uid"].split() == [uid] * 4  # real, effective, saved, file system
    assert status["Gid"].split() == [gid] * 4
    assert status["Groups"] == ""
    _assert_sealed(status)
    # Still serving on the port it could only bind as root: blocked, forwarded, metrics.
    assert server.udp("banned.example.test").answer[0][0].to_text() == "0.0.0.0"
    assert server.udp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
    assert server.tcp("www.example.test").rcode() == dns.rcode.NOERROR
    assert server.http_get("/healthz")[0] == 200
    assert "switched to user nobody" in server.log
    # The audit store was opened as root, before the switch; it is still written to.
    assert server.stop() == 0
    with sqlite3.connect(tmp_path / "audit.sqlite3") as db:
        assert db.execute("SELECT qname FROM events").fetchall() == [("banned.example.test",)]


def test_an_unknown_user_fails_before_binding(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dnsfilter", "serve", "--listen", "127.0.0.1:0",
         "--upstream", "127.0.0.1:9", "--metrics-listen", "127.0.0.1:0",
         "--user", "no-such-user"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "server.user: no user 'no-such-user' on this system" in result.stderr
    assert "listening on" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to drop it")
def test_user_flag_seals_the_supervisor_and_every_worker(
    start_dnsfilter: StartDnsFilter, scripted_upstream: ScriptedUpstream
) -> None:
    """--user on the command line, with server.workers 2: the supervisor drops and seals
    itself before forking, so every worker is born unprivileged."""
    nobody = pwd.getpwnam("nobody")
    scripted_upstream.add("www.example.test", "A", "192.0.2.10")
    config = base_config([scripted_upstream.address], server={"workers": 2})
    server = start_dnsfilter(config, ["--user", "nobody"])
    assert server.process is not None
    supervisor = server.process.pid
    workers = [int(pid) for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children")
               .read_text().split()]  # fmt: skip
    assert len(workers) == 2
    for pid in (supervisor, *workers):
        status = _status(pid)
        assert status["Uid"].split() == [str(nobody.pw_uid)] * 4, pid
        _assert_sealed(status)
    assert server.udp("www.example.test").answer[0][0].to_text() == "192.0.2.10"
    assert server.tcp("banned.example.test").answer[0][0].to_text() == "0.0.0.0"
