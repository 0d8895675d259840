"""Debian's unbound as a pure forwarder to one server: the reference resolver of the suite.

    with UnboundForwarder("127.0.0.1@5300") as unbound:
        ...  # ask 127.0.0.1:unbound.port

Everything is the distribution's default but for what FORWARDER_SETTINGS lists, each with
why: what makes unbound forward every name to an authoritative server on loopback and
answer it as a recursive resolver would, without DNSSEC validation (dnsfilter does not
validate either) and with nothing learnt from anywhere else.

Defaults of unbound 1.17 the suite's expectations (known.py) rest on, as
`unbound-checkconf -o` prints them: minimal-responses yes (no authority or additional
records in positive answers), edns-buffer-size 1232 (advertised) but max-udp-size 4096
(the largest UDP reply it sends), ede no (no Extended DNS Errors), hide-version and
hide-identity no (it answers version.bind and id.server in CHAOS), cache-max-ttl 86400,
cache-max-negative-ttl 3600, prefetch no, serve-expired no, deny-any no (ANY is forwarded).
The harden-* defaults are left alone: harden-glue (yes) keeps out-of-zone glue out of the
cache, which nsd never sends; harden-below-nxdomain (yes) acts only on DNSSEC-secure
NXDOMAIN and harden-dnssec-stripped only with a validator, neither of which is here;
harden-referral-path is off already.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.daemon import Daemon
from tests.unbound import find_unbound, free_tcp_port

#: (setting, why). Every line of the server: clause beyond the daemon plumbing.
FORWARDER_SETTINGS: tuple[tuple[str, str], ...] = (
    (
        'module-config: "iterator"',
        "no validator module: no DNSSEC validation, so no trust anchor is needed or loaded "
        "(the zones are unsigned, and dnsfilter does not validate); with no validator "
        "domain-insecure has nothing to switch off, so it is not set",
    ),
    (
        "do-not-query-localhost: no",
        "the forwarder (nsd) is on 127.0.0.1, which unbound refuses to query by default",
    ),
    (
        "qname-minimisation: no",
        "ask nsd the client's own question, as dnsfilter does, not a minimised one",
    ),
    (
        'local-zone: "test." nodefault',
        "unbound answers test. itself (RFC 6761 default zone, always NXDOMAIN); let it be "
        "forwarded",
    ),
    (
        "access-control: 127.0.0.0/8 allow",
        "the test clients; `allow` (not allow_snoop) also refuses RD=0 queries, unbound's "
        "default stance on cache snooping",
    ),
    (
        "num-threads: 1",
        "one cache: with several threads a repeat may land on a thread whose cache is cold",
    ),
    ("do-ip6: no", "the suite speaks IPv4 only"),
    (
        "infra-keep-probing: yes",
        "defensive: nsd REFUSEs the names outside its zones, and unbound must keep asking "
        "its only upstream for every other name, whatever it concluded about it",
    ),
)


class UnboundForwarder(Daemon):
    """unbound on 127.0.0.1 (UDP and TCP) forwarding "." to upstream (``host@port``), and
    the zones of ``forward`` (zone -> ``host@port``) to their own servers."""

    name = "unbound"

    def __init__(
        self,
        upstream: str,
        local_zones: Sequence[tuple[str, str]] = (),
        forward: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(find_unbound(), startup_timeout)
        self.upstream = upstream
        self.local_zones = list(local_zones)
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

    def _config(self) -> str:
        assert self.workdir is not None
        work = self.workdir
        lines = [
            "server:",
            f"    interface: {self.host}@{self.port}",
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{work}"',
            f'    pidfile: "{work}/unbound.pid"',
            '    logfile: ""',
            "    use-syslog: no",
            "    verbosity: 1",
            *(f"    {setting}" for setting, _ in FORWARDER_SETTINGS),
            *(f'    local-zone: "{zone}." {kind}' for zone, kind in self.local_zones),
            "",
            "remote-control:",
            "    control-enable: no",
            "",
            "forward-zone:",
            '    name: "."',
            f"    forward-addr: {self.upstream}",
            "",
        ]
        for zone, address in self.forward.items():
            lines += ["forward-zone:", f'    name: "{zone}."', f"    forward-addr: {address}", ""]
        return "\n".join(lines)

    def _check_config(self) -> None:
        checkconf = Path(self.binary).with_name("unbound-checkconf")
        if not checkconf.exists():
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
        # A local name: readiness must not put anything from nsd in the cache.
        probe = dns.message.make_query("localhost.", "A")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"unbound exited with status {proc.returncode}\n{self.log()}"
            try:
                dns.query.udp(probe, self.host, port=self.port, timeout=0.25)
                dns.query.tcp(probe, self.host, port=self.port, timeout=0.25)
            except (dns.exception.DNSException, OSError):
                time.sleep(0.05)
                continue
            return None
        return f"no answer within {self.startup_timeout:g}s\n{self.log()}"
