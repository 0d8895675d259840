"""A real authoritative upstream for integration tests: Debian's NSD on loopback.

    with NsdServer(zones={"example.test": DEFAULT_ZONE}) as ns:
        ...  # point the resolver at ns.address

Everything NSD writes (config, zone files, pid, xfrd state, log) lives in a fresh temp dir that
is removed on exit. NSD runs in the foreground (``nsd -d``) without dropping privileges
(``username: ""``), so it works as root and as an ordinary user; response rate limiting is
switched off when the installed build has it, so tests may query as fast as they like.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.daemon import Daemon
from tests.fakes import bind_udp_tcp, format_address

#: Records on ``big.example.test``: TXT answer ~2.7 kB (> 1232), A answer ~0.7 kB (> 512).
BIG_TXT_COUNT = 40
BIG_A_COUNT = 40
#: SOA MINIMUM (negative-caching TTL) of both default zones.
NEGATIVE_TTL = 60

_BIG_TXT = "\n".join(
    f'big     IN TXT  "big-record-{i:02d}-{"x" * 48}"' for i in range(BIG_TXT_COUNT)
)
_BIG_A = "\n".join(f"big     IN A    198.18.0.{i + 1}" for i in range(BIG_A_COUNT))

DEFAULT_ZONE = f"""\
$ORIGIN example.test.
$TTL 300
@       IN SOA  ns1.example.test. hostmaster.example.test. (
                2024010101 ; serial
                3600       ; refresh
                900        ; retry
                604800     ; expire
                {NEGATIVE_TTL} )       ; minimum: negative-caching TTL
@       IN NS   ns1.example.test.
@       IN MX   10 mail.example.test.
ns1     IN A    192.0.2.1
mail    IN A    192.0.2.25
www     IN A    192.0.2.10
www     IN AAAA 2001:db8::10
alias   IN CNAME www
txt     IN TXT  "v=dnsfilter-test" "hello world"
short 5 IN A    192.0.2.11
*.wild  IN A    192.0.2.99
{_BIG_TXT}
{_BIG_A}
"""

CORP_ZONE = f"""\
$ORIGIN corp.test.
$TTL 300
@        IN SOA  ns1.corp.test. hostmaster.corp.test. 2024010101 3600 900 604800 {NEGATIVE_TTL}
@        IN NS   ns1.corp.test.
ns1      IN A    10.1.2.1
intranet IN A    10.1.2.3
"""

DEFAULT_ZONES: Mapping[str, str] = {"example.test": DEFAULT_ZONE, "corp.test": CORP_ZONE}

_POLL_TIMEOUT = 0.25


#: Where to look for nsd when it is not on PATH (a non-root PATH often lacks /usr/sbin).
NSD_LOCATIONS: tuple[str, ...] = ("/usr/sbin/nsd", "/usr/local/sbin/nsd")


def find_nsd() -> str:
    """The nsd binary; RuntimeError if it is not installed."""
    found = shutil.which("nsd")
    if found:
        return found
    for candidate in NSD_LOCATIONS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("nsd not installed: apt-get install nsd")


def _tool(binary: str, name: str) -> str | None:
    sibling = Path(binary).with_name(name)
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which(name)


@functools.cache
def rrl_supported(binary: str) -> bool:
    """Whether this nsd was built with --enable-ratelimit (so ``rrl-*`` options take effect).

    Asks nsd-checkconf, which only knows the rrl options in such builds; falls back to looking
    for the flag in ``nsd -v``'s configure line.
    """
    checkconf = _tool(binary, "nsd-checkconf")
    if checkconf is not None:
        with tempfile.TemporaryDirectory(prefix="nsd-probe-") as tmp:
            conf = Path(tmp, "probe.conf")
            conf.write_text('server:\n    rrl-ratelimit: 0\n    username: ""\n')
            probe = subprocess.run(
                [checkconf, "-o", "rrl-ratelimit", str(conf)],
                capture_output=True,
                timeout=10,
                check=False,
            )
            return probe.returncode == 0 and probe.stdout.strip() == b"0"
    version = subprocess.run([binary, "-v"], capture_output=True, timeout=10, check=False)
    return b"--enable-ratelimit" in version.stdout + version.stderr


def _free_port(hosts: Sequence[str]) -> int:
    """A port that is free for UDP and TCP on every host (free now; nsd may still lose a race)."""
    for _ in range(50):
        udp, tcp = bind_udp_tcp(hosts[0])
        try:
            port = int(udp.getsockname()[1])
            held: list[socket.socket] = []
            try:
                for host in hosts[1:]:
                    held.extend(bind_udp_tcp(host, port, attempts=1))
            except OSError:
                continue
            finally:
                for sock in held:
                    sock.close()
            return port
        finally:
            udp.close()
            tcp.close()
    raise OSError(f"no port free for UDP and TCP on all of {', '.join(hosts)}")


class NsdServer(Daemon):
    """NSD serving ``zones`` (origin -> zone-file text) on ``host`` (or every one of ``hosts``).

    ``zones`` None or empty means DEFAULT_ZONES. Zones are checked with nsd-checkzone first, so a
    typo fails fast with its message. ``log()`` returns what nsd wrote, for failure messages.
    """

    name = "nsd"

    def __init__(
        self,
        zones: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        *,
        hosts: Sequence[str] | None = None,
        startup_timeout: float = 10.0,
        verbosity: int = 0,
    ) -> None:
        super().__init__(find_nsd(), startup_timeout)
        self.zones = {origin.rstrip(".").lower(): text for origin, text in (zones or {}).items()}
        if not self.zones:
            self.zones = dict(DEFAULT_ZONES)
        self.hosts: tuple[str, ...] = tuple(hosts) if hosts else (host,)
        self.host = self.hosts[0]
        self.verbosity = verbosity

    @property
    def address(self) -> str:
        """``host:port`` of the first host (``[::1]:port`` for IPv6)."""
        return format_address(self.host, self.port)

    @property
    def addresses(self) -> list[str]:
        return [format_address(h, self.port) for h in self.hosts]

    def log(self) -> str:
        """What nsd has written to stderr and its log file so far."""
        if self.workdir is None:
            return ""
        parts = []
        for name in ("nsd.stderr", "nsd.log"):
            path = self.workdir / name
            if path.exists():
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {name}\n{text[-4000:]}")
        return "\n".join(parts) or "(nsd wrote nothing)"

    # -- internals ----------------------------------------------------------------------------

    def _pick_port(self) -> int:
        return _free_port(self.hosts)

    def _where(self) -> str:
        return self.address

    def _prepare(self) -> None:
        assert self.workdir is not None
        checkzone = _tool(self.binary, "nsd-checkzone")
        for origin, text in self.zones.items():
            path = self.workdir / f"{origin}.zone"
            path.write_text(text)
            if checkzone is not None:
                check = subprocess.run(
                    [checkzone, origin, str(path)], capture_output=True, timeout=30, check=False
                )
                if check.returncode != 0:
                    output = (check.stdout + check.stderr).decode(errors="replace").strip()
                    raise RuntimeError(f"zone {origin} rejected by nsd-checkzone:\n{output}")

    def _config(self) -> str:
        assert self.workdir is not None
        work = self.workdir
        ipv6 = [":" in h for h in self.hosts]
        lines = [
            "server:",
            *(f"    ip-address: {h}@{self.port}" for h in self.hosts),
            f"    do-ip4: {'no' if all(ipv6) else 'yes'}",
            f"    do-ip6: {'yes' if any(ipv6) else 'no'}",
            "    server-count: 1",
            "    reuseport: no",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{work}"',
            '    database: ""',
            f'    zonelistfile: "{work}/zone.list"',
            f'    xfrdfile: "{work}/xfrd.state"',
            f'    xfrdir: "{work}"',
            f'    pidfile: "{work}/nsd.pid"',
            f'    logfile: "{work}/nsd.log"',
            f"    verbosity: {self.verbosity}",
            "    hide-version: yes",
            "    zonefiles-write: 0",
            "    tcp-count: 100",
        ]
        if rrl_supported(self.binary):
            lines += ["    rrl-ratelimit: 0", "    rrl-whitelist-ratelimit: 0"]
        lines += ["", "remote-control:", "    control-enable: no", ""]
        for origin in self.zones:
            lines += ["zone:", f"    name: {origin}", f'    zonefile: "{origin}.zone"', ""]
        return "\n".join(lines)

    def _wait_ready(self) -> str | None:
        """None once nsd answers every zone's SOA over UDP and TCP, else what went wrong."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        pending = list(self.zones)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"nsd exited with status {proc.returncode}\n{self.log()}"
            pending = [z for z in pending if not self._answers_soa(z, tcp=False)]
            if not pending and all(self._answers_soa(z, tcp=True) for z in self.zones):
                return None
            time.sleep(0.05)
        waiting = ", ".join(pending) or "TCP"
        return f"no SOA answer for {waiting} within {self.startup_timeout:g}s\n{self.log()}"

    def _answers_soa(self, origin: str, *, tcp: bool) -> bool:
        query = dns.message.make_query(f"{origin}.", dns.rdatatype.SOA)
        try:
            if tcp:
                reply = dns.query.tcp(query, self.host, port=self.port, timeout=_POLL_TIMEOUT)
            else:
                reply = dns.query.udp(query, self.host, port=self.port, timeout=_POLL_TIMEOUT)
        except (dns.exception.DNSException, OSError):
            return False
        return reply.rcode() == dns.rcode.NOERROR and any(
            rrset.rdtype == dns.rdatatype.SOA for rrset in reply.answer
        )
