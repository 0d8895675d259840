"""The real `dnsfilter serve` as a subprocess on loopback, and small client helpers."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import dns.message
import dns.query
import dns.rdatatype
import yaml
from prometheus_client.parser import text_string_to_metric_families

_LISTENING = re.compile(r"listening on (\S+) \(udp, tcp\)")
_METRICS = re.compile(r"metrics on http://(\S+)/metrics")
_START_TIMEOUT = 15.0
TIMEOUT = 3.0


def demo_list(name: str, domains: list[Any], **extra: Any) -> dict[str, Any]:
    """A valid YAML list document for tests."""
    return {
        "name": name,
        "title": name.title(),
        "vendor": "Test",
        "category": "other",
        "description": f"{name} test list",
        "references": [{"url": "https://example.org/", "title": "test"}],
        "domains": domains,
        **extra,
    }


class DnsFilter:
    """`python -m dnsfilter serve` on port 0; ports are read back from its log."""

    def __init__(
        self,
        tmp_path: Path,
        config: dict[str, Any] | None,
        lists: dict[str, dict[str, Any]] | None = None,
        args: list[str] | None = None,
        *,
        nofile: int | None = None,
    ) -> None:
        """nofile: start the server with this soft and hard RLIMIT_NOFILE."""
        self.tmp_path = tmp_path
        self.args = list(args or [])
        self.nofile = nofile
        if config is not None:
            for name, document in (lists or {}).items():
                (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(document))
            config_path = tmp_path / "dnsfilter.yaml"
            config_path.write_text(yaml.safe_dump(config))
            self.args = ["--config", str(config_path), *self.args]
        self.process: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        self.addresses: list[tuple[str, int]] = []
        self.metrics_address: tuple[str, int] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dnsfilter", "serve", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=None if self.nofile is None else self._limit_nofile,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(_START_TIMEOUT) or not self.addresses:
            self.stop()
            raise RuntimeError(f"dnsfilter did not start:\n{self.log}")

    def _limit_nofile(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _read_log(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line)
            match = _LISTENING.search(line)
            if match:
                host, _, port = match.group(1).rpartition(":")
                self.addresses.append((host.strip("[]"), int(port)))
            metrics = _METRICS.search(line)
            if metrics:
                host, _, port = metrics.group(1).rpartition(":")
                self.metrics_address = (host.strip("[]"), int(port))
            if "forwarding to" in line:
                ready.set()
        ready.set()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return self.process.returncode

    def http_get(self, path: str) -> tuple[int, str]:
        """GET a path from the status endpoint: (status, body)."""
        assert self.metrics_address is not None, "metrics are not enabled"
        host, port = self.metrics_address
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=TIMEOUT) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample's value from /metrics, or None when it is absent."""
        _, body = self.http_get("/metrics")
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def metric_sum(self, name: str, **labels: str) -> float:
        """The sum of the samples from /metrics that have these labels (0 when none)."""
        _, body = self.http_get("/metrics")
        return sum(
            float(sample.value)
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def address(self, family: int = socket.AF_INET) -> tuple[str, int]:
        for host, port in self.addresses:
            if (":" in host) == (family == socket.AF_INET6):
                return host, port
        raise LookupError(f"no listener for family {family}")

    @property
    def port(self) -> int:
        return self.address()[1]

    def udp(
        self,
        qname: str,
        qtype: str = "A",
        *,
        source: str | None = None,
        edns: bool = False,
        payload: int = 1232,
        want_dnssec: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
        wait: float = TIMEOUT,
    ) -> dns.message.Message:
        """wait: how long the client waits for the answer (a test whose upstream timeout is
        longer than TIMEOUT says so)."""
        query = make(qname, qtype, edns=edns, payload=payload, want_dnssec=want_dnssec)
        return dns.query.udp(
            query,
            host,
            port=port or self.port,
            timeout=wait,
            source=source,
            ignore_trailing=False,
        )

    def tcp(
        self,
        qname: str,
        qtype: str = "A",
        *,
        edns: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> dns.message.Message:
        query = make(qname, qtype, edns=edns)
        return dns.query.tcp(query, host, port=port or self.port, timeout=TIMEOUT)

    def raw_udp(self, data: bytes, wait: float = 1.0) -> bytes | None:
        """Send bytes; return the reply, or None when nothing came back within wait."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(wait)
            sock.sendto(data, ("127.0.0.1", self.port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None


def make(
    qname: str,
    qtype: str = "A",
    *,
    edns: bool = False,
    payload: int = 1232,
    want_dnssec: bool = False,
) -> dns.message.QueryMessage:
    """A query with EDNS(0) only when asked for (dnspython adds it whenever payload is set)."""
    if edns or want_dnssec:
        return dns.message.make_query(
            qname, qtype, use_edns=0, payload=payload, want_dnssec=want_dnssec
        )
    return dns.message.make_query(qname, qtype, use_edns=False)


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def rdata_texts(message: dns.message.Message, rdtype: str = "A") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in message.answer if rrset.rdtype == wanted for rd in rrset
    )
