"""The config's own kinds of value: addresses, prefixes, paths, accounts, upstream servers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnsfilter.config.addresses import (
    DOT_PORT,
    HostPort,
    UpstreamServer,
    check_tls_name,
    parse_host_port,
    parse_upstream,
    split_upstream,
)
from dnsfilter.config.schema import (
    INVALID,
    JSON,
    At,
    Bool,
    Int,
    Key,
    Kind,
    Number,
    Shape,
    Str,
    nullable,
    obj,
    strings,
)
from dnsfilter.config.yamltree import Mapping, Node, Reader, Scalar, Sequence, get

#: A user or group name as useradd takes it, or a number.
ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+")

_HOST_PORT = "ADDR, ADDR:PORT or [V6ADDR]:PORT"


def is_null(node: Node | None) -> bool:
    """An unquoted null (`~`, `null` or nothing): what a nullable key reads as None."""
    return isinstance(node, Scalar) and node.value is None and not node.quoted


def key_line(mapping: Mapping, key: str) -> int:
    return mapping.items[key][0] if key in mapping.items else mapping.line


def local_path(text: str, base: Path | None) -> str:
    """A path from the config, relative to the config's directory (kept as written without)."""
    path = Path(text).expanduser()
    return str(path if path.is_absolute() or base is None else base / path)


@dataclass(frozen=True)
class Items(Kind):
    """A list of strings, each parsed (ValueError: its message, or `message % text`)."""

    parse: Callable[[str], Any]
    item: str  #: what one item is, for the docs
    message: str = ""
    unique: bool = False
    at_least_one: str = ""  #: the problem when the list is empty ("" allows it)
    type_name = "list of strings"

    def read(self, node: Node, at: At) -> Any:
        out = []
        for line, path, text in at.reader.strings(node, at.path):
            try:
                out.append(self.parse(text))
            except ValueError as exc:
                at.reader.problem(line, path, self.message % text if self.message else str(exc))
        if self.at_least_one and isinstance(node, Sequence) and not node.items:
            at.problem(at.key_line, self.at_least_one)
        return tuple(dict.fromkeys(out)) if self.unique else tuple(out)

    def json(self) -> JSON:
        return nullable(strings(min_items=1 if self.at_least_one else 0))

    def bounds(self) -> str:
        return self.item


def listen_address(text: str) -> HostPort:
    return parse_host_port(text, 53)


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=True)


@dataclass(frozen=True)
class Address(Kind):
    """One ADDR[:PORT] (metrics.listen)."""

    default_port: int

    def read(self, node: Node, at: At) -> Any:
        text = at.reader.string(node, at.path)
        if text is None:
            return INVALID
        try:
            return parse_host_port(text, self.default_port)
        except ValueError as exc:
            at.problem(node.line, str(exc))
            return INVALID

    def bounds(self) -> str:
        return _HOST_PORT


@dataclass(frozen=True)
class IP(Kind):
    """An IPv4 or IPv6 address (policies.*.sinkhole_ipv4/6); null means none."""

    version: int

    def read(self, node: Node, at: At) -> Any:
        if is_null(node):
            return None
        text = at.reader.string(node, at.path)
        if text is None:
            return INVALID
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            at.problem(node.line, f"{text!r} is not an IP address")
            return INVALID
        if address.version != self.version:
            at.problem(node.line, f"expected an IPv{self.version} address (got {text})")
            return INVALID
        return address

    def json(self) -> JSON:
        return nullable({"type": "string"})

    def bounds(self) -> str:
        return f"IPv{self.version} address"


class Names(Kind):
    """A list of names of other entries (networks, lists); null means every one."""

    type_name = "list of names"

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    def read(self, node: Node, at: At) -> Any:
        if self.nullable and is_null(node):
            return None
        return tuple(text for _, _, text in at.reader.strings(node, at.path))

    def json(self) -> JSON:
        return nullable(strings())


class Account(Kind):
    """server.user / server.group: a name or a number; null means none."""

    type_name = "name or number"

    def read(self, node: Node, at: At) -> Any:
        if is_null(node):
            return None
        if isinstance(node, Scalar) and node.tag == "tag:yaml.org,2002:int" and not node.quoted:
            value = at.reader.integer(node, at.path, 0, 2**32 - 2)
            return INVALID if value is None else str(value)
        text = at.reader.string(node, at.path)
        if text is not None and not ACCOUNT.fullmatch(text):
            at.problem(node.line, f"expected a {at.key} name or number (got {text!r})")
            return INVALID
        return INVALID if text is None else text

    def json(self) -> JSON:
        account = {"type": "string", "pattern": f"^(?:{ACCOUNT.pattern})$"}
        return {"anyOf": [account, {"type": "integer", "minimum": 0}, {"type": "null"}]}


class FilePath(Kind):
    """A file path relative to the config file (as list paths are); null means none."""

    type_name = "path"

    def __init__(self, stdout: bool = False) -> None:
        self.stdout = stdout  #: "-" is standard output

    def read(self, node: Node, at: At) -> Any:
        if is_null(node) and not (isinstance(node, Scalar) and node.error):
            return None
        text = at.reader.string(node, at.path)
        if text is None:
            return INVALID
        if not text:
            at.problem(node.line, "expected a path (got an empty string)")
            return INVALID
        if "\0" in text:
            at.problem(node.line, f"a path cannot hold a NUL character (got {text!r})")
            return INVALID
        if text == "-" and self.stdout:
            return text
        return local_path(text, at.base)

    def json(self) -> JSON:
        return nullable({"type": "string", "minLength": 1})


#: The mapping form of an upstream server.
SERVER_ENTRY = (
    Key("address", Str(), "ADDR[:PORT], or tls://ADDR[:PORT][#NAME]", required=True),
    Key("port", Int(1, 65535), "the port, when the address has none"),
    Key("timeout", Number(60, above=0), "seconds per try; null: upstream.timeout"),
    Key("tls", Bool(), "DNS over TLS (RFC 7858; port 853 unless given)"),
    Key("tls_name", Str(), "tls: the name the certificate must hold (also sent as SNI)"),
    Key("ca_file", Shape({"type": "string", "minLength": 1}), "tls: CA file; default: system CAs"),
)
_ENTRY_KEYS = frozenset(k.name for k in SERVER_ENTRY)


class Servers(Kind):
    """Upstream servers: ADDR[:PORT], tls://ADDR[:PORT][#NAME], or {address, port, ...}."""

    type_name = "list of servers"

    def read(self, node: Node, at: At) -> Any:
        return read_servers(at.reader, node, at.path, at.base)

    def json(self) -> JSON:
        return nullable(strings({"anyOf": [{"type": "string"}, obj(SERVER_ENTRY)]}))

    def bounds(self) -> str:
        return "ADDR[:PORT], tls://ADDR[:PORT][#NAME], or a mapping (address, port, ...)"


def read_servers(
    r: Reader, node: Node | None, path: str, base: Path | None
) -> tuple[UpstreamServer, ...]:
    servers = []
    for index, child in enumerate(r.sequence(node, path)):
        item = f"{path}[{index}]"
        if isinstance(child, Mapping):
            server = _server_entry(r, child, item, base)
            if server is not None:
                servers.append(server)
            continue
        text = r.string(child, item)
        if text is None:
            continue
        try:
            servers.append(parse_upstream(text))
        except ValueError as exc:
            r.problem(child.line, item, str(exc))
    return tuple(servers)


def _server_entry(r: Reader, child: Mapping, item: str, base: Path | None) -> UpstreamServer | None:
    r.mapping(child, item, _ENTRY_KEYS)
    text = r.string(get(child, "address"), item + ".address")
    if "address" not in child.items:
        r.problem(child.line, item, "missing required key 'address'")
    port = r.integer(get(child, "port"), item + ".port", 1, 65535)
    timeout = r.number(get(child, "timeout"), item + ".timeout", 0, 60)
    tls = r.boolean(get(child, "tls"), item + ".tls")
    tls_name = r.string(get(child, "tls_name"), item + ".tls_name")
    ca_file = r.string(get(child, "ca_file"), item + ".ca_file")
    if text is None:
        return None
    try:
        scheme_tls, address, written_name = split_upstream(text)
    except ValueError as exc:
        r.problem(child.line, item + ".address", str(exc))
        return None
    if scheme_tls and tls is False:
        r.problem(key_line(child, "tls"), item + ".tls", "false, but the address is tls://")
    is_tls = scheme_tls or bool(tls)
    if port is not None and address.port and address.port != port:
        r.problem(child.line, item, "port given twice (in address and port)")
    if tls_name is not None:
        try:
            tls_name = check_tls_name(tls_name)
        except ValueError as exc:
            r.problem(key_line(child, "tls_name"), item + ".tls_name", str(exc))
            tls_name = None
        if written_name is not None:
            r.problem(child.line, item, "TLS name given twice (in address and tls_name)")
    tls_unreadable = tls is None and "tls" in child.items  # reported already
    for name in ("tls_name", "ca_file"):
        if name in child.items and not is_tls and not tls_unreadable:
            r.problem(key_line(child, name), f"{item}.{name}", "applies to tls servers only")
    if ca_file == "":
        r.problem(key_line(child, "ca_file"), item + ".ca_file", "expected a path (got '')")
    return UpstreamServer(
        HostPort(address.host, address.port or port or (DOT_PORT if is_tls else 53)),
        timeout,
        tls=is_tls,
        tls_name=written_name or tls_name,
        ca_file=local_path(ca_file, base) if ca_file else None,
    )
