"""The descriptor budget: RLIMIT_NOFILE split into shares, and the connection slots drawn on it.

Every socket is a file descriptor, and one process has RLIMIT_NOFILE of them. Left to
themselves, idle connections to the metrics port or to DNS over TCP would use them all, and
then every cache miss fails: no socket for the upstream query. So the limit is split:

- reserved: the process's own files (stdio, event loops, the audit store, list files);
- listeners: two sockets per listen address, one for metrics;
- upstream: a socket per query being resolved (server.max_inflight is lowered to fit), plus
  background refreshes and DNS-over-TLS connections;
- tcp and http: client connections, each capped in all and per client.

A client connection past its share is refused; the upstream share is never lent out. The
budget is per process: with server.workers each worker has the whole limit for itself.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import socket
from dataclasses import dataclass

from dnsfilter.config import Config

log = logging.getLogger(__name__)

#: Descriptors kept for the process itself: stdio, the event loop's epoll and wakeup pipe,
#: the upstream poller, the audit store (database, WAL, shared memory, JSON lines), list
#: files and downloads, /proc reads of the process metrics, TLS CA files.
RESERVED = 64
#: Upstream sockets kept for background refreshes (prefetches and refreshes that outlive
#: the stale answer a client got): the resolver runs at most 256 at once.
BACKGROUND = 256
#: DNS-over-TLS connections kept open per server (upstream.TLS_MAX_CONNECTIONS).
TLS_CONNECTIONS = 2
#: Fraction of what is left after the reserve and listeners that client connections may hold.
TCP_FRACTION = 4  #: at most a quarter for DNS over TCP
HTTP_FRACTION = 16  #: at most a sixteenth for the status endpoint
#: Target of the soft limit when the hard limit is unlimited.
UNLIMITED_TARGET = 65536


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
        else:
            soft = target
    return descriptor_limit() if soft == resource.RLIM_INFINITY else soft


def descriptor_limit() -> int:
    """The soft RLIMIT_NOFILE in force (UNLIMITED_TARGET when it is unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else int(soft)


@dataclass(frozen=True, slots=True)
class Budget:
    """One process's descriptors, by share, and the caps that keep each share."""

    limit: int  #: the soft RLIMIT_NOFILE
    reserved: int
    listeners: int
    upstream: int  #: inflight + background refreshes + DoT connections
    tcp: int  #: DNS-over-TCP connections at once (the global TCP cap)
    http: int  #: status endpoint connections at once (the global HTTP cap)
    inflight: int  #: cache misses resolved at once: server.max_inflight, or less to fit
    tcp_lowered: bool  #: tcp is below server.max_tcp_connections for want of descriptors
    http_lowered: bool  #: http is below metrics.max_connections for want of descriptors
    inflight_lowered: bool  #: inflight is below server.max_inflight for want of descriptors

    def shares(self) -> dict[str, int]:
        """Descriptors per share, for dnsfilter_descriptor_budget."""
        return {
            "limit": self.limit,
            "reserved": self.reserved,
            "listeners": self.listeners,
            "upstream": self.upstream,
            "tcp": self.tcp,
            "http": self.http,
        }

    def describe(self) -> str:
        return (
            f"descriptor budget {self.limit}: {self.reserved} reserved, {self.listeners} "
            f"listeners, {self.upstream} upstream sockets (for {self.inflight} cache misses "
            f"at once), {self.tcp} TCP clients, {self.http} HTTP clients"
        )


def plan_budget(limit: int, config: Config) -> Budget:
    """Split limit descriptors for config: what a process serving it may hold at most."""
    server, metrics = config.server, config.metrics
    listeners = 2 * len(server.listen) + (1 if metrics.enabled else 0)
    left = max(0, limit - RESERVED - listeners)
    tcp_share = max(1, left // TCP_FRACTION)
    tcp = min(server.max_tcp_connections, tcp_share)
    http = min(metrics.max_connections, max(1, left // HTTP_FRACTION)) if metrics.enabled else 0
    upstream = max(1, left - tcp - http)
    tls_servers = sum(1 for s in config.upstream.servers if s.tls) + sum(
        1 for zone in config.forward_zones for s in zone.servers if s.tls
    )
    kept = BACKGROUND + TLS_CONNECTIONS * tls_servers
    inflight = min(server.max_inflight, max(1, upstream - kept))
    return Budget(
        limit=limit,
        reserved=RESERVED,
        listeners=listeners,
        upstream=upstream,
        tcp=tcp,
        http=http,
        inflight=inflight,
        tcp_lowered=tcp < server.max_tcp_connections,
        http_lowered=metrics.enabled and http < metrics.max_connections,
        inflight_lowered=inflight < server.max_inflight,
    )


def log_budget(budget: Budget, level: int = logging.INFO) -> None:
    """Log the split once at start, and warn about each cap the limit lowered."""
    log.log(level, "%s", budget.describe())
    lowered = []
    if budget.inflight_lowered:
        lowered.append(f"server.max_inflight to {budget.inflight}")
    if budget.tcp_lowered:
        lowered.append(f"server.max_tcp_connections to {budget.tcp}")
    if budget.http_lowered:
        lowered.append(f"metrics.max_connections to {budget.http}")
    if lowered:
        log.warning(
            "the descriptor limit %d lowers %s; raise it (LimitNOFILE, ulimit -n) to serve more",
            budget.limit,
            ", ".join(lowered),
        )


#: A client as the per-client caps see it: an IPv4 address, or the /64 of an IPv6 address
#: (one host usually owns a whole /64, so capping single IPv6 addresses caps nothing).
ClientKey = str | bytes


def client_key(address: str) -> ClientKey:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address  # not an IP (a UNIX socket, a test's fake peer): a client of its own
    if ip.version == 6:
        return socket.inet_pton(socket.AF_INET6, str(ip))[:8]
    return address


class ConnectionSlots:
    """Connections held now, in all and per client, each count under its cap.

    take() answers at once: a connection is refused the moment it is accepted, before it
    costs more than the descriptor it arrived on.
    """

    __slots__ = ("by_client", "count", "global_reason", "per_client", "total")

    def __init__(self, total: int, per_client: int, lowered: bool = False) -> None:
        """lowered: total is the descriptor budget's share, below the configured cap."""
        self.total = total
        self.per_client = per_client
        #: the reason a refusal at the global cap is counted under
        self.global_reason = "budget" if lowered else "global"
        self.count = 0
        self.by_client: dict[ClientKey, int] = {}

    def take(self, address: str) -> tuple[ClientKey, str]:
        """(the client's key, "") when a slot was taken; (key, why not) when refused."""
        key = client_key(address)
        held = self.by_client.get(key, 0)
        if held >= self.per_client:
            return key, "per_address"
        if self.count >= self.total:
            return key, self.global_reason
        self.by_client[key] = held + 1
        self.count += 1
        return key, ""

    def give_back(self, key: ClientKey) -> None:
        """Release a slot take() gave out."""
        self.count -= 1
        left = self.by_client.get(key, 0) - 1
        if left > 0:
            self.by_client[key] = left
        else:
            self.by_client.pop(key, None)
