"""The configuration's frozen dataclasses; each YAML key is declared here once.

A section of the YAML file is one dataclass and its keys are the fields made by key(): kind
(type and bounds), default and one line of doc. An error path such as
``upstream.servers[1].timeout`` reads the same in the file and the code.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dnsfilter.config.addresses import HostPort, UpstreamServer
from dnsfilter.config.kinds import (
    IP,
    Account,
    Address,
    FilePath,
    Items,
    Names,
    Servers,
    listen_address,
    network,
)
from dnsfilter.config.schema import (
    Bool,
    Choice,
    Int,
    Mode,
    Named,
    Number,
    Section,
    Shape,
    Str,
    key,
    nullable,
    strings,
)
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.lists.location import DEFAULT_REFRESH, MIN_REFRESH
from dnsfilter.lists.location import is_url as is_url

# The list vocabulary the config checks entries against, imported in this one place.
from dnsfilter.lists.model import FORMATS, ROLES, Role

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CONFIG_NAME = "<embedded default config>"
#: The network name metrics give clients in no configured network.
RESERVED_NETWORK = "none"
#: Most server.workers: far more than cores on any one host, few enough to bound metric labels.
MAX_WORKERS = 256
#: policies.*.non_recursive values: what a query with RD=0 (asking what the cache holds,
#: the way one client learns which names the others resolved) gets.
NON_RECURSIVE = ("refuse", "cache")
#: ratelimit.action values: what a query over its client's rate gets.
RATELIMIT_ACTIONS = ("drop", "refused")
#: audit.pseudonymize values: store client addresses as they are, keyed-hashed, or truncated.
PSEUDONYMIZE_MODES = ("none", "hash", "truncate")
LOG_LEVELS = ("debug", "info", "warning", "error")

_LOCAL = (HostPort("127.0.0.1", 5353), HostPort("::1", 5353))
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[HostPort, ...] = key(
        Items(
            listen_address,
            "ADDR[:PORT], [V6ADDR][:PORT]",
            at_least_one="needs at least one address",
        ),
        _LOCAL,
        "UDP and TCP on each address (port 53 unless given)",
    )
    udp_payload_size: int = key(
        Int(512, 4096), 1232, "largest UDP reply; EDNS clients get min(theirs, this)"
    )
    tcp_idle_timeout: float = key(
        Number(3600, above=0), 10.0, "seconds a TCP connection may idle or take to send a query"
    )
    max_tcp_connections: int = key(
        Int(1, 65536), 256, "TCP connections at once (the descriptor budget may lower it)"
    )
    max_tcp_per_client: int = key(
        Int(1, 65536), 16, "TCP connections one IPv4 address or IPv6 /64 may hold"
    )
    max_tcp_queued_bytes: int = key(
        Int(512, 1 << 26),
        65536,
        "reply bytes queued on a connection before its queries stop being read",
    )
    max_inflight: int = key(
        Int(1, 1_000_000),
        4096,
        "cache misses being resolved at once (UDP drops, TCP SERVFAIL past it)",
    )
    shutdown_timeout: float = key(
        Number(300, at_least=0), 5.0, "on SIGTERM, seconds the queries in flight get to be answered"
    )
    user: str | None = key(Account(), None, "started as root: the user to become once bound")
    group: str | None = key(Account(), None, "...and the group; null: that user's primary group")
    workers: int = key(
        Int(0, MAX_WORKERS), 1, "processes sharing the listeners (SO_REUSEPORT); 0: one per CPU"
    )
    minimal_responses: bool = key(
        Bool(), True, "authority records only in negative answers, no additional ones"
    )
    max_waiters: int = key(
        Int(1, 100_000), 100, "queries that may wait on one identical cache miss; past it, SERVFAIL"
    )


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-client limits (dnsfilter.datapath.ratelimit): per IPv4 address and per IPv6 /64."""

    enabled: bool = key(Bool(), True, "false turns every per-client limit off")
    rate: float = key(
        Number(1e9, at_least=0), 100.0, "queries a second a client may keep up; 0: no rate limit"
    )
    burst: int = key(Int(1, 1_000_000), 200, "queries a client may send at once after being idle")
    max_inflight: int = key(
        Int(0, 1_000_000), 128, "cache misses one client may have being resolved; 0: no cap"
    )
    action: str = key(Choice(RATELIMIT_ACTIONS), "drop", "what a query over the rate gets")
    max_clients: int = key(
        Int(1, 10_000_000), 65536, "clients tracked at once (idle ones are forgotten first)"
    )
    exempt_networks: tuple[IPNetwork, ...] = key(
        Items(network, "prefixes"), _LOOPBACK, "prefixes never limited ([]: none)"
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    servers: tuple[UpstreamServer, ...] = key(
        Servers(), (), "the servers to forward to, in order; []: the nameservers of resolv_conf"
    )
    resolv_conf: str = key(
        Str(), "/etc/resolv.conf", "nameservers used when servers is empty (never ourselves)"
    )
    timeout: float = key(
        Number(60, above=0), 1.5, "seconds per server (its UDP retries included); then the next"
    )
    dead_time: float = key(
        Number(86400, above=0), 30.0, "seconds a failed server is tried only after the others"
    )
    health_check_interval: float = key(
        Number(86400, at_least=0), 10.0, "seconds between probes of every upstream; 0: off"
    )


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
    file: str = key(
        Str(), "", "a local list file (relative to the config), or shipped:NAME.yaml", shown=""
    )
    line: int = 0
    url: str = key(
        Str(), "", "...or the http(s) URL it is downloaded from (exactly one of the two)"
    )
    format: str | None = key(
        Choice(FORMATS, got=False), None, "the list's format; null: detected from name and content"
    )
    refresh: int = key(
        Int(MIN_REFRESH, 31_536_000), DEFAULT_REFRESH, "url lists: seconds between downloads"
    )
    cache_dir: str = key(
        Str(),
        "",
        "url lists: where the last good copy is kept",
        shown="$CACHE_DIRECTORY/lists, else ~/.cache/dnsfilter/lists",
    )
    ca_file: str = key(Str(), "", "https lists: CA file to verify with; default: the system's")


#: A policy's lists: a name (every role) or {list: NAME, roles: [ROLE, ...]}.
_POLICY_LIST = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["list", "roles"],
            "properties": {
                "list": {"type": "string"},
                "roles": {
                    "type": "array",
                    "items": {"enum": [r.value for r in Role]},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            },
        },
    ]
}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    name: str
    networks: tuple[str, ...] = key(
        Names(), (), "the networks it covers; every network is in exactly one policy"
    )
    lists: tuple[str, ...] = key(
        Shape(
            nullable(strings(_POLICY_LIST)), "list of lists", "NAME or {list: NAME, roles: [...]}"
        ),
        (),
        "the lists it enforces ([]: resolve without blocking); a name alone: every role",
    )
    mode: BlockMode = key(Mode(BlockMode), BlockMode.NULL, "how blocked names are answered")
    ttl: int = key(Int(0, 604800), 60, "TTL of blocked answers (and of their negative SOA)")
    sinkhole_ipv4: ipaddress.IPv4Address | None = key(
        IP(4), None, "sinkhole mode: the address A queries get"
    )
    sinkhole_ipv6: ipaddress.IPv6Address | None = key(
        IP(6), None, "sinkhole mode: the address AAAA queries get"
    )
    cname_inspection: bool = key(
        Bool(), True, "block answers whose CNAME chain enters a blocked name"
    )
    response_ip_blocking: bool = key(
        Bool(), True, "block answers with addresses in a list's networks"
    )
    non_recursive: str = key(
        Choice(NON_RECURSIVE),
        "refuse",
        "a query with RD=0: refuse (REFUSED) or cache (answered from the cache only)",
    )
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
    watch_files: bool = key(
        Bool(), True, "reload when the config file or a local list file changes"
    )
    watch_interval: float = key(Number(3600, above=0), 5.0, "seconds between checks of those files")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = key(Bool(), True, "serve /metrics, /healthz and /readyz")
    listen: HostPort = key(
        Address(9153),
        HostPort("127.0.0.1", 9153),
        "the endpoint's address (or --metrics-listen)",
        shown="127.0.0.1:9153",
    )
    max_connections: int = key(
        Int(1, 65536), 64, "connections at once (the descriptor budget may lower it)"
    )
    max_connections_per_client: int = key(Int(1, 65536), 8, "per IPv4 address or IPv6 /64")
    request_timeout: float = key(
        Number(60, above=0), 2.0, "seconds a client has to send its request head (slowloris)"
    )


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """What `dnsfilter monitor` and `dnsfilter egress export` treat as allowed and banned."""

    approved_resolvers: tuple[IPAddress, ...] = key(
        Items(
            ipaddress.ip_address,
            "IP addresses",
            "%r is not an IP address (without a port)",
            unique=True,
        ),
        (),
        "addresses clients may use for DNS and DoT; []: the server.listen hosts",
    )
    lists: tuple[str, ...] | None = key(
        Names(nullable=True), None, "lists whose names and networks count; null: every list"
    )
    drop_doh: bool = key(
        Bool(), False, "the export also drops the networks of bypass-category lists"
    )


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = key(Bool(), True, "cache upstream answers")
    max_entries: int = key(
        Int(1, 100_000_000), 100_000, "bound; entries not hit lately go first (CLOCK)"
    )
    min_ttl: int = key(Int(0, 86400), 0, "answers are kept at least this long...")
    max_ttl: int = key(Int(1, 604800), 86400, "...and at most this long (served TTLs clamped too)")
    negative_max_ttl: int = key(
        Int(0, 604800), 3600, "cap on NXDOMAIN/NODATA caching (RFC 2308 SOA minimum)"
    )
    serve_stale: bool = key(
        Bool(), True, "RFC 8767: answer from an expired entry when no upstream answers"
    )
    stale_max_age: int = key(
        Int(1, 604800), 86400, "seconds past expiry an entry may still be served"
    )
    stale_ttl: int = key(
        Int(1, 3600), 30, "TTL of stale answers; also how long a failed name is not retried"
    )
    stale_client_timeout: float = key(
        Number(60, at_least=0), 1.8, "seconds before a slow lookup is answered stale; 0: wait"
    )
    prefetch: bool = key(Bool(), True, "refresh popular entries before they expire")
    prefetch_min_hits: int = key(
        Int(1, 1_000_000), 2, "hits in an entry's last 10% of TTL that trigger a refresh"
    )

    def problems(self) -> Iterator[str]:
        if self.min_ttl > self.max_ttl:
            yield f"min_ttl {self.min_ttl} exceeds max_ttl {self.max_ttl}"


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
    """The audit log of blocked (and optionally allowed) queries: dnsfilter.observe.querylog."""

    enabled: bool = key(Bool(), True, "record blocked attempts and monitor events")
    sqlite_path: str | None = key(
        FilePath(),
        default_audit_path,
        "the SQLite store; null: no SQLite",
        shown="$STATE_DIRECTORY/audit.sqlite3, else ~/.local/state/dnsfilter/audit.sqlite3",
        factory=True,
    )
    jsonl_path: str | None = key(
        FilePath(stdout=True), None, 'also write JSON lines here ("-": stdout)'
    )
    log_allowed: bool = key(Bool(), False, "record every other answer too (forwarded, cached, ...)")
    retention_days: int = key(Int(0, 36500), 90, "rows older than this are deleted; 0: kept")
    max_size_mb: float = key(
        Number(1e6, at_least=0), 512, "past this the oldest rows go; 0: no size cap"
    )
    pseudonymize: str = key(
        Choice(PSEUDONYMIZE_MODES), "none", "what is stored of a client's address"
    )
    hash_key_file: str | None = key(
        FilePath(), None, "hash: HMAC-SHA256 key file (created, mode 0600, if missing)"
    )
    truncate_ipv4: int = key(Int(0, 32), 24, "truncate: prefix length kept of IPv4 clients")
    truncate_ipv6: int = key(Int(0, 128), 48, "truncate: prefix length kept of IPv6 clients")
    flush_interval: float = key(
        Number(3600, above=0), 1.0, "seconds between batched writes (sooner when half full)"
    )
    buffer_size: int = key(
        Int(1, 10_000_000), 65536, "events held in memory; a full buffer drops its oldest"
    )
    retry_interval: float = key(
        Number(3600, above=0), 10.0, "seconds between tries of a store that cannot be written"
    )

    def problems(self) -> Iterator[str]:
        if self.pseudonymize == "hash" and self.hash_key_file is None:
            yield "pseudonymize hash needs hash_key_file"
        if self.enabled and self.sqlite_path is None and self.jsonl_path is None:
            yield (
                "sqlite_path and jsonl_path are both null; "
                "write enabled: false to keep no audit log"
            )


_SERVERS_LIST = Servers()


@dataclass(frozen=True, slots=True)
class Config:
    source: str = DEFAULT_CONFIG_NAME
    server: ServerConfig = key(Section(ServerConfig), ServerConfig, "the listeners", factory=True)
    upstream: UpstreamConfig = key(
        Section(UpstreamConfig), UpstreamConfig, "where cache misses are forwarded", factory=True
    )
    forward_zones: tuple[ForwardZone, ...] = key(
        Named(_SERVERS_LIST, "a zone name", None),
        (),
        "zone -> servers: conditional forwarding of a zone and everything below it",
    )
    networks: tuple[NetworkConfig, ...] = key(
        Named(Items(network, "prefixes", at_least_one="x")),
        (),
        "name -> prefixes; a client's longest matching prefix wins",
    )
    lists: tuple[ListConfig, ...] = key(
        Named(ListConfig), (), "name -> list; the name is what policies and logs use"
    )
    allowlist: tuple[str, ...] = key(
        Names(), (), "names (and all below them) never blocked, whatever the lists say"
    )
    policies: tuple[PolicyConfig, ...] = key(
        Named(PolicyConfig),
        (),
        "which networks get which lists, and how blocked names are answered",
    )
    cache: CacheConfig = key(Section(CacheConfig), CacheConfig, "the answer cache", factory=True)
    ratelimit: RateLimitConfig = key(
        Section(RateLimitConfig, ("action", "exempt_networks")),
        RateLimitConfig,
        "per-client limits; a client is an IPv4 address or an IPv6 /64",
        factory=True,
    )
    metrics: MetricsConfig = key(
        Section(MetricsConfig, ("listen",)), MetricsConfig, "the status endpoint", factory=True
    )
    reload: ReloadConfig = key(
        Section(ReloadConfig), ReloadConfig, "reloading on file changes", factory=True
    )
    egress: EgressConfig = key(
        Section(EgressConfig), EgressConfig, "dnsfilter monitor and egress export", factory=True
    )
    audit: AuditConfig = key(
        Section(AuditConfig, ("pseudonymize",)), AuditConfig, "the audit log", factory=True
    )
    log_level: str = key(
        Choice(LOG_LEVELS, lower=True, value_line=True), "info", "the least severe log level logged"
    )
