"""Addresses as the config and the command line write them: ADDR[:PORT], tls://ADDR#NAME."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dnsfilter.names import InvalidName, normalize_domain


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str  #: an IP address in its canonical text form
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def family_v6(self) -> bool:
        return ":" in self.host


#: The port of DNS over TLS (RFC 7858).
DOT_PORT = 853
_TLS_SCHEME = "tls://"


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    address: HostPort
    timeout: float | None = None  #: per-try timeout; None uses upstream.timeout
    tls: bool = False  #: DNS over TLS (RFC 7858) instead of UDP with TCP on truncation
    #: the name the certificate must hold (also sent as SNI); None: the address itself
    tls_name: str | None = None
    ca_file: str | None = None  #: CA certificates to verify with; None: the system's

    @property
    def name(self) -> str:
        """The label metrics and logs use: the address as written, tls:// for DoT."""
        return f"{_TLS_SCHEME}{self.address}" if self.tls else str(self.address)


def parse_host_port(text: str, default_port: int, min_port: int = 0) -> HostPort:
    """ADDR, ADDR:PORT, [V6ADDR] or [V6ADDR]:PORT; raise ValueError with the reason.

    Port 0 (min_port=0) asks the kernel for a free port: fine to listen on, not to send to.
    """
    text = text.strip()
    port = default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected ':PORT' after ']' in {text!r}")
            port = _port(rest[1:], text, min_port)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text, min_port)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return HostPort(str(address), port)


def parse_upstream(text: str) -> UpstreamServer:
    """ADDR[:PORT] (plain DNS, port 53) or tls://ADDR[:PORT][#NAME] (DNS over TLS, port 853).

    NAME is the name the server's certificate must hold; without it, its address.
    Raise ValueError with the reason.
    """
    tls, address, tls_name = split_upstream(text)
    port = address.port or (DOT_PORT if tls else 53)
    return UpstreamServer(HostPort(address.host, port), tls=tls, tls_name=tls_name)


def split_upstream(text: str) -> tuple[bool, HostPort, str | None]:
    """(tls://?, the address with port 0 when none is written, the #NAME); ValueError."""
    text = text.strip()
    if not text.lower().startswith(_TLS_SCHEME):
        if "#" in text:
            raise ValueError(f"'#NAME' needs a tls:// address (got {text!r})")
        return False, parse_host_port(text, 0, min_port=1), None
    rest, hash_sign, name = text[len(_TLS_SCHEME) :].partition("#")
    tls_name = check_tls_name(name) if hash_sign else None
    return True, parse_host_port(rest, 0, min_port=1), tls_name


def check_tls_name(text: str) -> str:
    """A certificate name to verify: a domain name, normalized; ValueError if it is not one."""
    try:
        return normalize_domain(text)
    except InvalidName as exc:
        raise ValueError(f"bad TLS name {text!r}: {exc}") from None


def _port(text: str, whole: str, min_port: int) -> int:
    plain = text.isascii() and text.isdigit() and (len(text) == 1 or text[0] != "0")
    if not plain or not min_port <= int(text) <= 65535:
        raise ValueError(f"bad port {text!r} in {whole!r}")
    return int(text)


def read_resolv_conf(path: str) -> tuple[HostPort, ...]:
    """The nameservers of a resolv.conf file (port 53), in order."""
    servers = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    # A link-local server is only reachable through its scope (fe80::1%eth0).
                    servers.append(HostPort(str(ipaddress.ip_address(words[1])), 53))
                except ValueError:
                    continue
    return tuple(servers)
