"""A real DNS-over-TLS upstream for integration tests: Debian's unbound on loopback.

    ca = CertAuthority.create(tmp_path / "ca")
    cert = ca.issue(tmp_path / "cert", dns_names=[DOT_NAME], ips=["127.0.0.1"])
    with UnboundDot(cert, local_data=["www.example.test. 300 IN A 192.0.2.10"]) as dot:
        ...  # tls://127.0.0.1:{dot.port}#dns.dnsfilter.test, ca_file ca.pem

unbound listens with TLS only (``tls-port``) on a free port of 127.0.0.1, answers the
``local_data`` records itself (every other name is NXDOMAIN, so nothing ever leaves the
host) and forwards the zones in ``forward`` (zone -> "127.0.0.1@PORT") to loopback servers.
Its remote control is a UNIX socket in the temp dir: ``stats()`` reads its counters
(``num.query.tls`` counts the queries that came over TLS).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dnslib import DNSRecord

from tests.certs import ServerCert
from tests.daemon import Daemon

#: The name the test certificates are issued for.
DOT_NAME = "dns.dnsfilter.test"


def find_unbound() -> str:
    for candidate in (shutil.which("unbound"), "/usr/sbin/unbound"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("unbound not installed: apt-get install unbound")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class UnboundDot(Daemon):
    """unbound serving DNS over TLS on 127.0.0.1 with cert; see the module docstring."""

    name = "unbound"

    def __init__(
        self,
        cert: ServerCert,
        local_data: Sequence[str] = (),
        forward: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(find_unbound(), startup_timeout)
        self.cert = cert
        self.local_data = list(local_data)
        self.forward = dict(forward or {})
        self.host = "127.0.0.1"

    def _pick_port(self) -> int:
        return free_tcp_port(self.host)

    def _where(self) -> str:
        return f"{self.host}@{self.port}"

    def log(self) -> str:
        if self.workdir is None:
            return ""
        path = self.workdir / "unbound.stderr"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return text[-4000:] or "(unbound wrote nothing)"

    def stats(self) -> dict[str, float]:
        """unbound-control stats_noreset as a dict (total.num.queries, num.query.tls, ...)."""
        control = Path(self.binary).with_name("unbound-control")
        done = subprocess.run(
            [str(control), "-c", str(self.config_path), "stats_noreset"],
            capture_output=True,
            timeout=10,
            check=True,
        )
        values = {}
        for line in done.stdout.decode().splitlines():
            key, _, value = line.partition("=")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
        return values

    def query(self, qname: str, qtype: str = "A", ca_file: Path | None = None) -> DNSRecord:
        """One query over a fresh TLS connection (checked against ca_file, the name DOT_NAME)."""
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if ca_file is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = DNSRecord.question(qname, qtype)
        request.header.id = secrets.randbits(16)
        wire = request.pack()
        with (
            socket.create_connection((self.host, self.port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=DOT_NAME) as tls,
        ):
            tls.sendall(len(wire).to_bytes(2, "big") + wire)
            head = _read_exactly(tls, 2)
            return DNSRecord.parse(_read_exactly(tls, int.from_bytes(head, "big")))

    # -- internals

    def _config(self) -> str:
        assert self.workdir is not None
        work = self.workdir
        lines = [
            "server:",
            f"    interface: {self.host}@{self.port}",
            f"    tls-port: {self.port}",
            f'    tls-service-key: "{self.cert.key}"',
            f'    tls-service-pem: "{self.cert.pem}"',
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{work}"',
            f'    pidfile: "{work}/unbound.pid"',
            '    logfile: ""',
            "    use-syslog: no",
            "    verbosity: 1",
            "    extended-statistics: yes",
            "    num-threads: 1",
            "    do-ip6: no",
            "    access-control: 127.0.0.0/8 allow",
            "    incoming-num-tcp: 64",
            "    tcp-idle-timeout: 30000",
            '    module-config: "iterator"',
            "    do-not-query-localhost: no",
            # Nothing is ever sent to the Internet: every name not forwarded is answered here.
            '    local-zone: "." static',
            *(f'    local-data: "{record}"' for record in self.local_data),
            *(f'    local-zone: "{zone}." transparent' for zone in self.forward),
            "",
            "remote-control:",
            "    control-enable: yes",
            f'    control-interface: "{work}/unbound.ctl"',
            "    control-use-cert: no",
            "",
        ]
        for zone, address in self.forward.items():
            lines += ["forward-zone:", f'    name: "{zone}."', f"    forward-addr: {address}", ""]
        return "\n".join(lines)

    def _check_config(self) -> None:
        checkconf = Path(self.binary).with_name("unbound-checkconf")
        if not os.access(checkconf, os.X_OK):
            return
        done = subprocess.run(
            [str(checkconf), str(self.config_path)], capture_output=True, timeout=10, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"unbound-checkconf rejected the config:\n{output}")

    def _wait_ready(self) -> str | None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"unbound exited with status {proc.returncode}\n{self.log()}"
            try:
                self.query("ready.invalid")
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            return None
        return f"no answer over TLS within {self.startup_timeout:g}s\n{self.log()}"


def _read_exactly(sock: ssl.SSLSocket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data
