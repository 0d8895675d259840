"""The configuration: frozen dataclasses read from YAML with every mistake reported at once.

Each section of the YAML file is one dataclass and its keys are the field names, so an
error path such as ``upstream.servers[1].timeout`` reads the same in the file and the code.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.errors import ConfigError
from dnsfilter.lists.formats import FORMATS
from dnsfilter.lists.location import DEFAULT_REFRESH, MIN_REFRESH, is_url
from dnsfilter.lists.model import ROLES, Role
from dnsfilter.lists.yamlformat import read_mode, read_roles
from dnsfilter.names import InvalidName, normalize_domain
from dnsfilter.yamltree import (
    Mapping,
    Node,
    Reader,
    Scalar,
    Sequence,
    YamlSyntaxError,
    by_line,
    get,
    parse,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CONFIG_NAME = "<embedded default config>"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LOG_LEVELS = ("debug", "info", "warning", "error")
#: A user or group name as useradd takes it, or a number.
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+")
#: The network name metrics give clients in no configured network.
RESERVED_NETWORK = "none"


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


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 5353), HostPort("::1", 5353))
    udp_payload_size: int = 1232
    tcp_idle_timeout: float = 10.0
    #: an upper bound: the descriptor budget may lower it (dnsfilter.budget)
    max_tcp_connections: int = 256
    max_tcp_per_client: int = 16  #: TCP connections one IPv4 address or IPv6 /64 may hold
    #: reply bytes queued on one TCP connection before its queries stop being read
    max_tcp_queued_bytes: int = 65536
    max_inflight: int = 4096
    shutdown_timeout: float = 5.0  #: seconds SIGTERM waits for queries being resolved
    user: str | None = None  #: started as root: the user to switch to once bound
    group: str | None = None  #: ...and the group; None: the user's primary group
    #: processes serving the listeners (SO_REUSEPORT); 0: one per CPU this process may use
    workers: int = 1
    #: replies carry authority records only for a negative answer, and no additional ones
    minimal_responses: bool = True
    #: queries that may wait on one identical cache miss being resolved; past it, SERVFAIL
    max_waiters: int = 100


#: Most server.workers: far more than cores on any one host, few enough to bound metric labels.
MAX_WORKERS = 256

#: policies.*.non_recursive values: what a query with RD=0 (asking what the cache holds,
#: the way one client learns which names the others resolved) gets.
NON_RECURSIVE = ("refuse", "cache")

#: ratelimit.action values: what a query over its client's rate gets.
RATELIMIT_ACTIONS = ("drop", "refused")


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-client limits (dnsfilter.ratelimit): per IPv4 address and per IPv6 /64."""

    enabled: bool = True
    rate: float = 100.0  #: queries per second a client may keep up; 0 = no rate limit
    burst: int = 200  #: queries a client may send at once after being idle
    max_inflight: int = 128  #: cache misses one client may have being resolved; 0 = no cap
    action: str = "drop"  #: one of RATELIMIT_ACTIONS
    max_clients: int = 65536  #: clients tracked at once (idle ones are forgotten first)
    exempt_networks: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    servers: tuple[UpstreamServer, ...] = ()
    resolv_conf: str = "/etc/resolv.conf"
    timeout: float = 1.5
    dead_time: float = 30.0
    health_check_interval: float = 10.0  #: seconds between probes of every upstream; 0 = off


@dataclass(frozen=True, slots=True)
class ForwardZone:
    zone: str
    servers: tuple[UpstreamServer, ...]


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    name: str
    prefixes: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class ListConfig:
    name: str
    file: str = ""  #: absolute path, or shipped:NAME.yaml; "" for a url list
    line: int = 0
    url: str = ""  #: http(s) URL the list is downloaded from; "" for a file list
    format: str | None = None  #: one of lists.FORMATS; None: detected from name and content
    refresh: int = DEFAULT_REFRESH  #: url lists: seconds between downloads
    cache_dir: str = ""  #: url lists: where the last good copy is kept; "" = the default
    ca_file: str = ""  #: https lists: CA certificates to verify with; "" = the system's


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    name: str
    networks: tuple[str, ...]
    lists: tuple[str, ...]
    mode: BlockMode = BlockMode.NULL
    ttl: int = 60
    sinkhole_ipv4: ipaddress.IPv4Address | None = None
    sinkhole_ipv6: ipaddress.IPv6Address | None = None
    cname_inspection: bool = True  #: block answers whose CNAME chain enters a blocked name
    response_ip_blocking: bool = True  #: block answers with addresses in a list's networks
    #: what a query with RD=0 gets: one of NON_RECURSIVE (refuse: REFUSED; cache: an answer
    #: from the cache only, never a new upstream query)
    non_recursive: str = "refuse"
    #: per list, the entry roles enforced when not all (`{list: x, roles: [...]}`)
    roles: tuple[tuple[str, frozenset[Role]], ...] = ()

    def roles_for(self, list_name: str) -> frozenset[Role]:
        """The roles this policy enforces from the list: every role unless it chose some."""
        for name, chosen in self.roles:
            if name == list_name:
                return chosen
        return ROLES


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    watch_files: bool = True  #: reload when the config or a local list file changes
    watch_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    listen: HostPort = HostPort("127.0.0.1", 9153)
    #: an upper bound: the descriptor budget may lower it (dnsfilter.budget)
    max_connections: int = 64
    max_connections_per_client: int = 8  #: per IPv4 address or IPv6 /64
    request_timeout: float = 2.0  #: seconds a client gets to send its request head


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """What `dnsfilter monitor` and `dnsfilter egress export` treat as allowed and banned."""

    #: resolvers clients may use on ports 53 and 853; () means the addresses in server.listen
    approved_resolvers: tuple[IPAddress, ...] = ()
    lists: tuple[str, ...] | None = None  #: lists whose names and networks count; None = all
    drop_doh: bool = False  #: the export also drops the networks of bypass-category lists


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = True
    max_entries: int = 100_000
    min_ttl: int = 0
    max_ttl: int = 86400
    negative_max_ttl: int = 3600
    #: RFC 8767: answer from an expired entry when no upstream answers
    serve_stale: bool = True
    stale_max_age: int = 86400  #: seconds past expiry an entry may still be served
    stale_ttl: int = 30  #: TTL of stale answers; also how long a failed name is not retried
    stale_client_timeout: float = 1.8  #: seconds before a stale answer is sent; 0 = wait
    prefetch: bool = True  #: refresh popular entries before they expire
    prefetch_min_hits: int = 2  #: hits in an entry's last 10% of TTL that trigger a refresh


#: audit.pseudonymize values: store client addresses as they are, keyed-hashed, or truncated.
PSEUDONYMIZE_MODES = ("none", "hash", "truncate")


def default_audit_path() -> str:
    """systemd's StateDirectory= when set, else the XDG state directory of the user."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return str(Path(state) / "audit.sqlite3")
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return str(base / "dnsfilter" / "audit.sqlite3")


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The audit log of blocked (and optionally allowed) queries: dnsfilter.querylog."""

    enabled: bool = True
    sqlite_path: str | None = field(default_factory=default_audit_path)  #: None: no SQLite
    jsonl_path: str | None = None  #: "-" is stdout
    log_allowed: bool = False
    retention_days: int = 90  #: 0 keeps rows forever
    max_size_mb: float = 512  #: 0 means no size cap
    pseudonymize: str = "none"  #: one of PSEUDONYMIZE_MODES
    hash_key_file: str | None = None
    truncate_ipv4: int = 24
    truncate_ipv6: int = 48
    flush_interval: float = 1.0
    buffer_size: int = 65536
    retry_interval: float = 10.0  #: seconds between tries of a store that cannot be written


@dataclass(frozen=True, slots=True)
class Config:
    source: str = DEFAULT_CONFIG_NAME
    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    forward_zones: tuple[ForwardZone, ...] = ()
    networks: tuple[NetworkConfig, ...] = ()
    lists: tuple[ListConfig, ...] = ()
    allowlist: tuple[str, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    log_level: str = "info"


_TOP_KEYS = frozenset(
    {
        "server",
        "upstream",
        "forward_zones",
        "networks",
        "lists",
        "allowlist",
        "policies",
        "cache",
        "ratelimit",
        "metrics",
        "egress",
        "reload",
        "audit",
        "log_level",
    }
)
_SERVER_KEYS = frozenset(
    {
        "listen",
        "udp_payload_size",
        "tcp_idle_timeout",
        "max_tcp_connections",
        "max_tcp_per_client",
        "max_tcp_queued_bytes",
        "max_inflight",
        "shutdown_timeout",
        "user",
        "group",
        "workers",
        "minimal_responses",
        "max_waiters",
    }
)
_RATELIMIT_KEYS = frozenset(
    {"enabled", "rate", "burst", "max_inflight", "action", "max_clients", "exempt_networks"}
)
_UPSTREAM_KEYS = frozenset(
    {"servers", "resolv_conf", "timeout", "dead_time", "health_check_interval"}
)
_METRICS_KEYS = frozenset(
    {"enabled", "listen", "max_connections", "max_connections_per_client", "request_timeout"}
)
_EGRESS_KEYS = frozenset({"approved_resolvers", "lists", "drop_doh"})
_SERVER_ENTRY_KEYS = frozenset({"address", "port", "timeout", "tls", "tls_name", "ca_file"})
_LIST_KEYS = frozenset({"file", "url", "format", "refresh", "cache_dir", "ca_file"})
_URL_LIST_KEYS = ("refresh", "cache_dir", "ca_file")
_POLICY_KEYS = frozenset(
    {
        "networks",
        "lists",
        "mode",
        "ttl",
        "sinkhole_ipv4",
        "sinkhole_ipv6",
        "cname_inspection",
        "response_ip_blocking",
        "non_recursive",
    }
)
_POLICY_LIST_KEYS = frozenset({"list", "roles"})
_RELOAD_KEYS = frozenset({"watch_files", "watch_interval"})
_CACHE_KEYS = frozenset(
    {
        "enabled",
        "max_entries",
        "min_ttl",
        "max_ttl",
        "negative_max_ttl",
        "serve_stale",
        "stale_max_age",
        "stale_ttl",
        "stale_client_timeout",
        "prefetch",
        "prefetch_min_hits",
    }
)
_AUDIT_KEYS = frozenset(
    {
        "enabled",
        "sqlite_path",
        "jsonl_path",
        "log_allowed",
        "retention_days",
        "max_size_mb",
        "pseudonymize",
        "hash_key_file",
        "truncate_ipv4",
        "truncate_ipv6",
        "flush_interval",
        "buffer_size",
        "retry_interval",
    }
)


def default_config_text() -> str:
    return resources.files("dnsfilter").joinpath("default_config.yaml").read_text("utf-8")


def load_config(path: Path | None) -> Config:
    """Read a config file, or the embedded default when path is None."""
    if path is None:
        return parse_config(default_config_text(), DEFAULT_CONFIG_NAME, base=None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    return parse_config(text, str(path), base=path.resolve().parent)


def parse_config(text: str, filename: str, base: Path | None) -> Config:
    """Build a Config from YAML text; relative list paths are taken from base."""
    try:
        root, problems = parse(text, filename)
    except YamlSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    r = Reader(filename, problems)
    top = r.mapping(root, "", _TOP_KEYS)
    config = Config(
        source=filename,
        server=_server(r, r.mapping(get(top, "server"), "server", _SERVER_KEYS)),
        upstream=_upstream(r, r.mapping(get(top, "upstream"), "upstream", _UPSTREAM_KEYS), base),
        forward_zones=_forward_zones(
            r, r.mapping(get(top, "forward_zones"), "forward_zones"), base
        ),
        networks=_networks(r, r.mapping(get(top, "networks"), "networks")),
        lists=_lists(r, r.mapping(get(top, "lists"), "lists"), base),
        allowlist=_allowlist(r, get(top, "allowlist")),
        policies=_policies(r, r.mapping(get(top, "policies"), "policies")),
        cache=_cache(r, r.mapping(get(top, "cache"), "cache", _CACHE_KEYS)),
        ratelimit=_ratelimit(r, r.mapping(get(top, "ratelimit"), "ratelimit", _RATELIMIT_KEYS)),
        metrics=_metrics(r, r.mapping(get(top, "metrics"), "metrics", _METRICS_KEYS)),
        reload=_reload(r, r.mapping(get(top, "reload"), "reload", _RELOAD_KEYS)),
        egress=_egress(r, r.mapping(get(top, "egress"), "egress", _EGRESS_KEYS)),
        audit=_audit(r, r.mapping(get(top, "audit"), "audit", _AUDIT_KEYS), base),
        log_level=_log_level(r, get(top, "log_level")),
    )
    _cross_check(r, config, top)
    _cross_check_egress(r, config, top)
    if r.problems:
        raise ConfigError(by_line(r.problems, filename))
    return config


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
    tls, address, tls_name = _split_upstream(text)
    port = address.port or (DOT_PORT if tls else 53)
    return UpstreamServer(HostPort(address.host, port), tls=tls, tls_name=tls_name)


def _split_upstream(text: str) -> tuple[bool, HostPort, str | None]:
    """(tls://?, the address with port 0 when none is written, the #NAME); ValueError."""
    text = text.strip()
    if not text.lower().startswith(_TLS_SCHEME):
        if "#" in text:
            raise ValueError(f"'#NAME' needs a tls:// address (got {text!r})")
        return False, parse_host_port(text, 0, min_port=1), None
    rest, hash_sign, name = text[len(_TLS_SCHEME) :].partition("#")
    tls_name = _tls_name(name) if hash_sign else None
    return True, parse_host_port(rest, 0, min_port=1), tls_name


def _tls_name(text: str) -> str:
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


def with_overrides(
    config: Config,
    listen: list[str] | None = None,
    upstreams: list[str] | None = None,
    log_level: str | None = None,
    metrics_listen: str | None = None,
    lists: list[str] | None = None,
    user: str | None = None,
    group: str | None = None,
) -> Config:
    """Apply command-line flags; each replaces its config value only when given.

    lists (``--list [FORMAT:]FILE_OR_URL``) are added to the configured ones and to every
    policy; relative paths are taken from the working directory.
    """
    problems: list[str] = []
    if lists:
        config = _with_lists(config, lists, problems)
    if metrics_listen:
        try:
            address = parse_host_port(metrics_listen, 9153)
            metrics = replace(config.metrics, enabled=True, listen=address)
            config = replace(config, metrics=metrics)
        except ValueError as exc:
            problems.append(f"--metrics-listen: {exc}")
    if listen:
        addresses = []
        for text in listen:
            try:
                addresses.append(parse_host_port(text, 53))
            except ValueError as exc:
                problems.append(f"--listen: {exc}")
        config = replace(config, server=replace(config.server, listen=tuple(addresses)))
    if upstreams:
        servers = []
        for text in upstreams:
            try:
                servers.append(parse_upstream(text))
            except ValueError as exc:
                problems.append(f"--upstream: {exc}")
        config = replace(config, upstream=replace(config.upstream, servers=tuple(servers)))
    if log_level:
        config = replace(config, log_level=log_level)
    for key, value in (("user", user), ("group", group)):
        if value is not None and not _ACCOUNT.fullmatch(value):
            problems.append(f"--{key}: expected a {key} name or number (got {value!r})")
    if user is not None:
        config = replace(config, server=replace(config.server, user=user))
    if group is not None:
        config = replace(config, server=replace(config.server, group=group))
    if problems:
        raise ConfigError(problems)
    return config


def split_list_spec(spec: str) -> tuple[str | None, str]:
    """``[FORMAT:]FILE_OR_URL`` as (format or None, location)."""
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in FORMATS:
        return prefix, rest
    return None, spec


def _with_lists(config: Config, specs: list[str], problems: list[str]) -> Config:
    taken = {item.name for item in config.lists}
    added = []
    for spec in specs:
        list_format, location = split_list_spec(spec)
        if not location:
            problems.append(f"--list: nothing after the format in {spec!r}")
            continue
        name = _unique_name(_list_stem(location), taken)
        taken.add(name)
        if is_url(location):
            problem = _url_problem(location)
            if problem:
                problems.append(f"--list: {problem}")
                continue
            added.append(ListConfig(name, url=location, format=list_format))
        else:
            file = location
            if not file.startswith("shipped:"):
                file = _local_path(file, Path.cwd())
            added.append(ListConfig(name, file, format=list_format))
    names = tuple(item.name for item in added)
    return replace(
        config,
        lists=config.lists + tuple(added),
        policies=tuple(replace(p, lists=p.lists + names) for p in config.policies),
    )


def _list_stem(location: str) -> str:
    """A list name from a file or URL: its last path segment without the extension."""
    if is_url(location):
        parts = urlsplit(location)
        stem = Path(parts.path).stem or (parts.hostname or "")
    else:
        stem = Path(location.removeprefix("shipped:")).stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")
    return cleaned or "list"


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


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


# ---------------------------------------------------------------------------------------
# Sections


def _server(r: Reader, node: Mapping | None) -> ServerConfig:
    default = ServerConfig()
    listen = default.listen
    if get(node, "listen") is not None:
        addresses = []
        for line, path, text in r.strings(get(node, "listen"), "server.listen"):
            try:
                addresses.append(parse_host_port(text, 53))
            except ValueError as exc:
                r.problem(line, path, str(exc))
        listen = tuple(addresses)
        listen_node = get(node, "listen")
        if isinstance(listen_node, Sequence) and not listen_node.items and node is not None:
            r.problem(node.items["listen"][0], "server.listen", "needs at least one address")
    return ServerConfig(
        listen=listen,
        udp_payload_size=_or(
            r.integer(get(node, "udp_payload_size"), "server.udp_payload_size", 512, 4096),
            default.udp_payload_size,
        ),
        tcp_idle_timeout=_or(
            r.number(get(node, "tcp_idle_timeout"), "server.tcp_idle_timeout", 0, 3600),
            default.tcp_idle_timeout,
        ),
        max_tcp_connections=_or(
            r.integer(get(node, "max_tcp_connections"), "server.max_tcp_connections", 1, 65536),
            default.max_tcp_connections,
        ),
        max_tcp_per_client=_or(
            r.integer(get(node, "max_tcp_per_client"), "server.max_tcp_per_client", 1, 65536),
            default.max_tcp_per_client,
        ),
        max_tcp_queued_bytes=_or(
            r.integer(
                get(node, "max_tcp_queued_bytes"), "server.max_tcp_queued_bytes", 512, 1 << 26
            ),
            default.max_tcp_queued_bytes,
        ),
        max_inflight=_or(
            r.integer(get(node, "max_inflight"), "server.max_inflight", 1, 1_000_000),
            default.max_inflight,
        ),
        shutdown_timeout=_or(
            r.number(
                get(node, "shutdown_timeout"), "server.shutdown_timeout", high=300, at_least=0
            ),
            default.shutdown_timeout,
        ),
        user=_account(r, node, "user"),
        group=_account(r, node, "group"),
        workers=_or(
            r.integer(get(node, "workers"), "server.workers", 0, MAX_WORKERS), default.workers
        ),
        minimal_responses=_or(
            r.boolean(get(node, "minimal_responses"), "server.minimal_responses"),
            default.minimal_responses,
        ),
        max_waiters=_or(
            r.integer(get(node, "max_waiters"), "server.max_waiters", 1, 100_000),
            default.max_waiters,
        ),
    )


def _account(r: Reader, node: Mapping | None, key: str) -> str | None:
    """server.user / server.group: a name or a number (as text); null means none."""
    child = get(node, key)
    if child is None or (isinstance(child, Scalar) and child.value is None and not child.quoted):
        return None
    if isinstance(child, Scalar) and child.tag == "tag:yaml.org,2002:int" and not child.quoted:
        value = r.integer(child, f"server.{key}", 0, 2**32 - 2)
        return None if value is None else str(value)
    text = r.string(child, f"server.{key}")
    if text is not None and not _ACCOUNT.fullmatch(text):
        r.problem(child.line, f"server.{key}", f"expected a {key} name or number (got {text!r})")
        return None
    return text


def _ratelimit(r: Reader, node: Mapping | None) -> RateLimitConfig:
    default = RateLimitConfig()
    action = _or(r.string(get(node, "action"), "ratelimit.action"), default.action)
    if action not in RATELIMIT_ACTIONS:
        actions = ", ".join(RATELIMIT_ACTIONS)
        line = node.items["action"][0] if node else 0
        r.problem(line, "ratelimit.action", f"must be one of {actions} (got {action!r})")
        action = default.action
    exempt = default.exempt_networks
    if get(node, "exempt_networks") is not None:
        prefixes = []
        path = "ratelimit.exempt_networks"
        for line, item_path, text in r.strings(get(node, "exempt_networks"), path):
            try:
                prefixes.append(ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                r.problem(line, item_path, str(exc))
        exempt = tuple(prefixes)
    return RateLimitConfig(
        enabled=_or(r.boolean(get(node, "enabled"), "ratelimit.enabled"), default.enabled),
        rate=_or(r.number(get(node, "rate"), "ratelimit.rate", high=1e9, at_least=0), default.rate),
        burst=_or(r.integer(get(node, "burst"), "ratelimit.burst", 1, 1_000_000), default.burst),
        max_inflight=_or(
            r.integer(get(node, "max_inflight"), "ratelimit.max_inflight", 0, 1_000_000),
            default.max_inflight,
        ),
        action=action,
        max_clients=_or(
            r.integer(get(node, "max_clients"), "ratelimit.max_clients", 1, 10_000_000),
            default.max_clients,
        ),
        exempt_networks=exempt,
    )


def _upstream(r: Reader, node: Mapping | None, base: Path | None) -> UpstreamConfig:
    default = UpstreamConfig()
    return UpstreamConfig(
        servers=_server_list(r, get(node, "servers"), "upstream.servers", base),
        resolv_conf=_or(
            r.string(get(node, "resolv_conf"), "upstream.resolv_conf"), default.resolv_conf
        ),
        timeout=_or(r.number(get(node, "timeout"), "upstream.timeout", 0, 60), default.timeout),
        dead_time=_or(
            r.number(get(node, "dead_time"), "upstream.dead_time", 0, 86400), default.dead_time
        ),
        health_check_interval=_or(
            r.number(
                get(node, "health_check_interval"),
                "upstream.health_check_interval",
                high=86400,
                at_least=0,
            ),
            default.health_check_interval,
        ),
    )


def _metrics(r: Reader, node: Mapping | None) -> MetricsConfig:
    default = MetricsConfig()
    listen = default.listen
    text = r.string(get(node, "listen"), "metrics.listen")
    if text is not None:
        try:
            listen = parse_host_port(text, 9153)
        except ValueError as exc:
            line = get(node, "listen")
            r.problem(line.line if line else 0, "metrics.listen", str(exc))
    return MetricsConfig(
        enabled=_or(r.boolean(get(node, "enabled"), "metrics.enabled"), default.enabled),
        listen=listen,
        max_connections=_or(
            r.integer(get(node, "max_connections"), "metrics.max_connections", 1, 65536),
            default.max_connections,
        ),
        max_connections_per_client=_or(
            r.integer(
                get(node, "max_connections_per_client"),
                "metrics.max_connections_per_client",
                1,
                65536,
            ),
            default.max_connections_per_client,
        ),
        request_timeout=_or(
            r.number(get(node, "request_timeout"), "metrics.request_timeout", 0, 60),
            default.request_timeout,
        ),
    )


def _server_list(
    r: Reader, node: Node | None, path: str, base: Path | None
) -> tuple[UpstreamServer, ...]:
    servers = []
    for index, child in enumerate(r.sequence(node, path)):
        item = f"{path}[{index}]"
        if isinstance(child, Mapping):
            server = _server_entry(r, child, item, base)
            if server is not None:
                servers.append(server)
        else:
            text = r.string(child, item)
            if text is None:
                continue
            try:
                servers.append(parse_upstream(text))
            except ValueError as exc:
                r.problem(child.line, item, str(exc))
    return tuple(servers)


def _server_entry(r: Reader, child: Mapping, item: str, base: Path | None) -> UpstreamServer | None:
    """{address, port, timeout, tls, tls_name, ca_file}; address may use the string forms."""
    r.mapping(child, item, _SERVER_ENTRY_KEYS)
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
        scheme_tls, address, written_name = _split_upstream(text)
    except ValueError as exc:
        r.problem(child.line, item + ".address", str(exc))
        return None
    if scheme_tls and tls is False:
        r.problem(_key_line(child, "tls"), item + ".tls", "false, but the address is tls://")
    is_tls = scheme_tls or bool(tls)
    if port is not None and address.port and address.port != port:
        r.problem(child.line, item, "port given twice (in address and port)")
    if tls_name is not None:
        try:
            tls_name = _tls_name(tls_name)
        except ValueError as exc:
            r.problem(_key_line(child, "tls_name"), item + ".tls_name", str(exc))
            tls_name = None
        if written_name is not None:
            r.problem(child.line, item, "TLS name given twice (in address and tls_name)")
    tls_unreadable = tls is None and "tls" in child.items  # reported already
    for key in ("tls_name", "ca_file"):
        if key in child.items and not is_tls and not tls_unreadable:
            r.problem(_key_line(child, key), f"{item}.{key}", "applies to tls servers only")
    if ca_file == "":
        r.problem(_key_line(child, "ca_file"), item + ".ca_file", "expected a path (got '')")
    return UpstreamServer(
        HostPort(address.host, address.port or port or (DOT_PORT if is_tls else 53)),
        timeout,
        tls=is_tls,
        tls_name=written_name or tls_name,
        ca_file=_local_path(ca_file, base) if ca_file else None,
    )


def _forward_zones(r: Reader, node: Mapping | None, base: Path | None) -> tuple[ForwardZone, ...]:
    zones = []
    for key, (line, child) in (node.items if node else {}).items():
        path = f"forward_zones.{key}"
        try:
            zone = normalize_domain(key)
        except InvalidName as exc:
            r.problem(line, path, f"bad zone name: {exc}")
            continue
        servers = _server_list(r, child, path, base)
        if not servers:
            r.problem(line, path, "needs at least one server")
            continue
        zones.append(ForwardZone(zone, servers))
    return tuple(zones)


def _networks(r: Reader, node: Mapping | None) -> tuple[NetworkConfig, ...]:
    networks = []
    for name, (line, child) in (node.items if node else {}).items():
        path = f"networks.{name}"
        _check_name(r, line, path, name)
        if name == RESERVED_NETWORK:
            r.problem(line, path, f"{name!r} is reserved for clients in no network")
        prefixes = []
        for item_line, item_path, text in r.strings(child, path):
            try:
                prefixes.append(ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                r.problem(item_line, item_path, str(exc))
        empty = child is None or (isinstance(child, Sequence) and not child.items)
        if empty or (isinstance(child, Scalar) and child.value is None and not child.quoted):
            r.problem(line, path, "needs at least one prefix")
        networks.append(NetworkConfig(name, tuple(prefixes)))
    return tuple(networks)


def _lists(r: Reader, node: Mapping | None, base: Path | None) -> tuple[ListConfig, ...]:
    lists = []
    for name, (line, child) in (node.items if node else {}).items():
        path = f"lists.{name}"
        _check_name(r, line, path, name)
        entry = r.mapping(child, path, _LIST_KEYS)
        if entry is None:
            if child is None:
                r.problem(line, path, "needs a mapping with 'file' or 'url'")
            continue
        file = r.string(get(entry, "file"), path + ".file")
        url = r.string(get(entry, "url"), path + ".url")
        if ("file" in entry.items) == ("url" in entry.items):
            r.problem(entry.line, path, "needs exactly one of 'file' and 'url'")
        list_format = r.string(get(entry, "format"), path + ".format")
        if list_format is not None and list_format not in FORMATS:
            known = ", ".join(FORMATS)
            r.problem(_key_line(entry, "format"), path + ".format", f"must be one of {known}")
            list_format = None
        refresh = r.integer(get(entry, "refresh"), path + ".refresh", MIN_REFRESH, 31_536_000)
        cache_dir = r.string(get(entry, "cache_dir"), path + ".cache_dir") or ""
        ca_file = r.string(get(entry, "ca_file"), path + ".ca_file") or ""
        if "file" in entry.items:
            for key in _URL_LIST_KEYS:
                if key in entry.items:
                    r.problem(_key_line(entry, key), f"{path}.{key}", "applies to url lists only")
        if url is not None:
            problem = _url_problem(url)
            if problem:
                r.problem(_key_line(entry, "url"), path + ".url", problem)
                continue
            if ca_file and not url.startswith("https:"):
                r.problem(_key_line(entry, "ca_file"), path + ".ca_file", "needs an https URL")
            lists.append(
                ListConfig(
                    name,
                    line=entry.line,
                    url=url,
                    format=list_format,
                    refresh=_or(refresh, DEFAULT_REFRESH),
                    cache_dir=_local_path(cache_dir, base) if cache_dir else "",
                    ca_file=_local_path(ca_file, base) if ca_file else "",
                )
            )
            continue
        if file is None:
            continue
        if not file.startswith("shipped:") and base is not None:
            file = _local_path(file, base)
        lists.append(ListConfig(name, file, entry.line, format=list_format))
    return tuple(lists)


def _key_line(mapping: Mapping, key: str) -> int:
    return mapping.items[key][0] if key in mapping.items else mapping.line


def _local_path(text: str, base: Path | None) -> str:
    """A path from the config, relative to the config's directory (kept as written without)."""
    path = Path(text).expanduser()
    return str(path if path.is_absolute() or base is None else base / path)


def _url_problem(url: str) -> str | None:
    """Why url cannot be a list's URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what raises
    except ValueError as exc:
        return f"{exc} in {url!r}"
    if not is_url(url) or not parts.hostname:
        return f"expected an http:// or https:// URL with a host (got {url!r})"
    return None


def _allowlist(r: Reader, node: Node | None) -> tuple[str, ...]:
    names = []
    for line, path, text in r.strings(node, "allowlist"):
        try:
            names.append(normalize_domain(text))
        except InvalidName as exc:
            r.problem(line, path, str(exc))
    return tuple(dict.fromkeys(names))


def _policies(r: Reader, node: Mapping | None) -> tuple[PolicyConfig, ...]:
    policies = []
    for name, (line, child) in (node.items if node else {}).items():
        path = f"policies.{name}"
        _check_name(r, line, path, name)
        entry = r.mapping(child, path, _POLICY_KEYS)
        if entry is None:
            if child is None:
                r.problem(line, path, "needs a mapping with networks and lists")
            continue
        networks = tuple(
            text for _, _, text in r.strings(get(entry, "networks"), path + ".networks")
        )
        if "networks" not in entry.items:
            r.problem(entry.line, path, "missing required key 'networks'")
        lists, roles = _policy_lists(r, get(entry, "lists"), path + ".lists")
        mode = _or(read_mode(r, get(entry, "mode"), path + ".mode"), BlockMode.NULL)
        ipv4 = _address(r, get(entry, "sinkhole_ipv4"), path + ".sinkhole_ipv4", 4)
        ipv6 = _address(r, get(entry, "sinkhole_ipv6"), path + ".sinkhole_ipv6", 6)
        if mode is BlockMode.SINKHOLE and ipv4 is None and ipv6 is None:
            r.problem(entry.line, path, "mode sinkhole needs sinkhole_ipv4 or sinkhole_ipv6")
        non_recursive = _or(
            r.string(get(entry, "non_recursive"), path + ".non_recursive"), "refuse"
        )
        if non_recursive not in NON_RECURSIVE:
            r.problem(
                entry.items["non_recursive"][0],
                path + ".non_recursive",
                f"must be one of {', '.join(NON_RECURSIVE)} (got {non_recursive!r})",
            )
            non_recursive = "refuse"
        policies.append(
            PolicyConfig(
                name=name,
                networks=networks,
                lists=lists,
                mode=mode,
                ttl=_or(r.integer(get(entry, "ttl"), path + ".ttl", 0, 604800), 60),
                sinkhole_ipv4=ipv4 if isinstance(ipv4, ipaddress.IPv4Address) else None,
                sinkhole_ipv6=ipv6 if isinstance(ipv6, ipaddress.IPv6Address) else None,
                cname_inspection=_or(
                    r.boolean(get(entry, "cname_inspection"), path + ".cname_inspection"), True
                ),
                response_ip_blocking=_or(
                    r.boolean(get(entry, "response_ip_blocking"), path + ".response_ip_blocking"),
                    True,
                ),
                non_recursive=non_recursive,
                roles=roles,
            )
        )
    return tuple(policies)


def _policy_lists(
    r: Reader, node: Node | None, path: str
) -> tuple[tuple[str, ...], tuple[tuple[str, frozenset[Role]], ...]]:
    """A policy's lists: a name enforces every role of the list, a mapping
    `{list: NAME, roles: [ROLE, ...]}` only the roles given."""
    names: list[str] = []
    roles: list[tuple[str, frozenset[Role]]] = []
    for index, child in enumerate(r.sequence(node, path)):
        item = f"{path}[{index}]"
        if not isinstance(child, Mapping):
            text = r.string(child, item)
            if text is not None:
                names.append(text)
            continue
        r.mapping(child, item, _POLICY_LIST_KEYS)
        name = r.string(get(child, "list"), item + ".list")
        if "list" not in child.items:
            r.problem(child.line, item, "missing required key 'list'")
        chosen = read_roles(r, get(child, "roles"), item + ".roles")
        if "roles" not in child.items:
            r.problem(
                child.line, item, "missing required key 'roles' (write the name alone for all)"
            )
        if name is not None:
            names.append(name)
            if chosen:
                roles.append((name, frozenset(chosen)))
    return tuple(names), tuple(roles)


def _reload(r: Reader, node: Mapping | None) -> ReloadConfig:
    default = ReloadConfig()
    return ReloadConfig(
        watch_files=_or(r.boolean(get(node, "watch_files"), "reload.watch_files"), True),
        watch_interval=_or(
            r.number(get(node, "watch_interval"), "reload.watch_interval", 0, 3600),
            default.watch_interval,
        ),
    )


def _address(r: Reader, node: Node | None, path: str, version: int) -> IPAddress | None:
    if node is None or (isinstance(node, Scalar) and node.value is None and not node.quoted):
        return None
    text = r.string(node, path)
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        r.problem(node.line, path, f"{text!r} is not an IP address")
        return None
    if address.version != version:
        r.problem(node.line, path, f"expected an IPv{version} address (got {text})")
        return None
    return address


def _cache(r: Reader, node: Mapping | None) -> CacheConfig:
    default = CacheConfig()
    config = CacheConfig(
        enabled=_or(r.boolean(get(node, "enabled"), "cache.enabled"), default.enabled),
        max_entries=_or(
            r.integer(get(node, "max_entries"), "cache.max_entries", 1, 100_000_000),
            default.max_entries,
        ),
        min_ttl=_or(r.integer(get(node, "min_ttl"), "cache.min_ttl", 0, 86400), default.min_ttl),
        max_ttl=_or(r.integer(get(node, "max_ttl"), "cache.max_ttl", 1, 604800), default.max_ttl),
        negative_max_ttl=_or(
            r.integer(get(node, "negative_max_ttl"), "cache.negative_max_ttl", 0, 604800),
            default.negative_max_ttl,
        ),
        serve_stale=_or(r.boolean(get(node, "serve_stale"), "cache.serve_stale"), True),
        stale_max_age=_or(
            r.integer(get(node, "stale_max_age"), "cache.stale_max_age", 1, 604800),
            default.stale_max_age,
        ),
        stale_ttl=_or(
            r.integer(get(node, "stale_ttl"), "cache.stale_ttl", 1, 3600), default.stale_ttl
        ),
        stale_client_timeout=_or(
            r.number(
                get(node, "stale_client_timeout"),
                "cache.stale_client_timeout",
                high=60,
                at_least=0,
            ),
            default.stale_client_timeout,
        ),
        prefetch=_or(r.boolean(get(node, "prefetch"), "cache.prefetch"), True),
        prefetch_min_hits=_or(
            r.integer(get(node, "prefetch_min_hits"), "cache.prefetch_min_hits", 1, 1_000_000),
            default.prefetch_min_hits,
        ),
    )
    if config.min_ttl > config.max_ttl and node is not None:
        r.problem(node.line, "cache", f"min_ttl {config.min_ttl} exceeds max_ttl {config.max_ttl}")
    return config


def _egress(r: Reader, node: Mapping | None) -> EgressConfig:
    resolvers = []
    for line, path, text in r.strings(get(node, "approved_resolvers"), "egress.approved_resolvers"):
        try:
            resolvers.append(ipaddress.ip_address(text))
        except ValueError:
            r.problem(line, path, f"{text!r} is not an IP address (without a port)")
    lists_node = get(node, "lists")
    lists = None
    # Absent or null means every configured list; [] means none.
    if lists_node is not None and not (
        isinstance(lists_node, Scalar) and lists_node.value is None and not lists_node.quoted
    ):
        lists = tuple(text for _, _, text in r.strings(lists_node, "egress.lists"))
    return EgressConfig(
        approved_resolvers=tuple(dict.fromkeys(resolvers)),
        lists=lists,
        drop_doh=_or(r.boolean(get(node, "drop_doh"), "egress.drop_doh"), False),
    )


def _audit(r: Reader, node: Mapping | None, base: Path | None) -> AuditConfig:
    default = AuditConfig()
    mode = _or(r.string(get(node, "pseudonymize"), "audit.pseudonymize"), default.pseudonymize)
    if mode not in PSEUDONYMIZE_MODES:
        modes = ", ".join(PSEUDONYMIZE_MODES)
        line = node.items["pseudonymize"][0] if node else 0
        r.problem(line, "audit.pseudonymize", f"must be one of {modes} (got {mode!r})")
        mode = default.pseudonymize
    config = AuditConfig(
        enabled=_or(r.boolean(get(node, "enabled"), "audit.enabled"), default.enabled),
        sqlite_path=_audit_path(r, node, "sqlite_path", base, default.sqlite_path),
        jsonl_path=_audit_path(r, node, "jsonl_path", base, None),
        log_allowed=_or(r.boolean(get(node, "log_allowed"), "audit.log_allowed"), False),
        retention_days=_or(
            r.integer(get(node, "retention_days"), "audit.retention_days", 0, 36500),
            default.retention_days,
        ),
        max_size_mb=_or(
            r.number(get(node, "max_size_mb"), "audit.max_size_mb", high=1e6, at_least=0),
            default.max_size_mb,
        ),
        pseudonymize=mode,
        hash_key_file=_audit_path(r, node, "hash_key_file", base, None),
        truncate_ipv4=_or(
            r.integer(get(node, "truncate_ipv4"), "audit.truncate_ipv4", 0, 32),
            default.truncate_ipv4,
        ),
        truncate_ipv6=_or(
            r.integer(get(node, "truncate_ipv6"), "audit.truncate_ipv6", 0, 128),
            default.truncate_ipv6,
        ),
        flush_interval=_or(
            r.number(get(node, "flush_interval"), "audit.flush_interval", 0, 3600),
            default.flush_interval,
        ),
        buffer_size=_or(
            r.integer(get(node, "buffer_size"), "audit.buffer_size", 1, 10_000_000),
            default.buffer_size,
        ),
        retry_interval=_or(
            r.number(get(node, "retry_interval"), "audit.retry_interval", 0, 3600),
            default.retry_interval,
        ),
    )
    if node is not None and config.pseudonymize == "hash" and config.hash_key_file is None:
        r.problem(node.line, "audit", "pseudonymize hash needs hash_key_file")
    no_writer = config.sqlite_path is None and config.jsonl_path is None
    if node is not None and config.enabled and no_writer:
        r.problem(
            node.line,
            "audit",
            "sqlite_path and jsonl_path are both null; write enabled: false to keep no audit log",
        )
    return config


def _audit_path(
    r: Reader, node: Mapping | None, key: str, base: Path | None, default: str | None
) -> str | None:
    """A file path relative to the config file (as list paths are); null means none."""
    child = get(node, key)
    if child is None:
        return default
    if isinstance(child, Scalar) and child.value is None and not child.quoted and not child.error:
        return None
    text = r.string(child, f"audit.{key}")
    if text is None:
        return default
    if not text:
        r.problem(child.line, f"audit.{key}", "expected a path (got an empty string)")
        return default
    if "\0" in text:
        r.problem(child.line, f"audit.{key}", f"a path cannot hold a NUL character (got {text!r})")
        return default
    if text == "-" and key == "jsonl_path":
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() or base is None else base / path)


def _log_level(r: Reader, node: Node | None) -> str:
    text = r.string(node, "log_level")
    if text is None:
        return "info"
    if text.lower() not in _LOG_LEVELS:
        levels = ", ".join(_LOG_LEVELS)
        r.problem(node.line if node else 0, "log_level", f"must be one of {levels} (got {text!r})")
        return "info"
    return text.lower()


def _check_name(r: Reader, line: int, path: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        r.problem(line, path, "names use letters, digits, '.', '-' and '_'")


def _cross_check(r: Reader, config: Config, top: Mapping | None) -> None:
    """References between sections: policies name known networks and lists, once each."""
    network_names = {n.name for n in config.networks}
    list_names = {item.name for item in config.lists}
    owner: dict[str, str] = {}
    for policy in config.policies:
        path = f"policies.{policy.name}"
        policy_node = get(_as_mapping(get(top, "policies")), policy.name)
        network_lines = _item_lines(policy_node, "networks")
        for network, line in zip(policy.networks, network_lines, strict=False):
            if network not in network_names:
                r.problem(line, path + ".networks", f"unknown network {network!r}")
            elif owner.get(network) == policy.name:
                r.problem(line, path + ".networks", f"network {network!r} is listed twice")
            elif network in owner:
                r.problem(
                    line,
                    path + ".networks",
                    f"network {network!r} already belongs to policy {owner[network]!r}",
                )
            else:
                owner[network] = policy.name
        list_lines = _item_lines(policy_node, "lists", by_key="list")
        for name, line in zip(policy.lists, list_lines, strict=False):
            if name not in list_names:
                r.problem(line, path + ".lists", f"unknown list {name!r}")
    networks_node = _as_mapping(get(top, "networks"))
    seen: dict[IPNetwork, str] = {}
    for net in config.networks:
        line = networks_node.items[net.name][0] if networks_node else 0
        if net.name not in owner:
            r.problem(
                line,
                f"networks.{net.name}",
                "no policy covers this network; add it to a policy (lists: [] for none)",
            )
        for prefix in net.prefixes:
            if prefix in seen and seen[prefix] != net.name:
                r.problem(
                    line,
                    f"networks.{net.name}",
                    f"prefix {prefix} is also in network {seen[prefix]!r}",
                )
            seen[prefix] = net.name


def _cross_check_egress(r: Reader, config: Config, top: Mapping | None) -> None:
    """egress.lists names configured lists."""
    if config.egress.lists is None:
        return
    known = {item.name for item in config.lists}
    lines = _item_lines(get(top, "egress"), "lists")
    for name, line in zip(config.egress.lists, lines, strict=False):
        if name not in known:
            r.problem(line, "egress.lists", f"unknown list {name!r}")


def _as_mapping(node: Node | None) -> Mapping | None:
    return node if isinstance(node, Mapping) else None


def _item_lines(node: Node | None, key: str, by_key: str | None = None) -> list[int]:
    """The line of each string item of the list under key: the items Reader.strings yields;
    with by_key, also of each mapping item that names a string under by_key."""
    items = get(_as_mapping(node), key)
    if not isinstance(items, Sequence):
        return []
    lines = []
    for item in items.items:
        child = get(item, by_key) if by_key is not None and isinstance(item, Mapping) else item
        if isinstance(child, Scalar) and (child.quoted or isinstance(child.value, str)):
            lines.append(child.line)
    return lines


_T = TypeVar("_T")


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value
