"""What egress allows and bans, worked out once from the config and the loaded lists.

The monitor and the nftables export read the same EgressPlan, so the traffic one reports is
the traffic the other drops.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from dnsfilter.config import Config, IPAddress, IPNetwork, read_resolv_conf
from dnsfilter.errors import ConfigError
from dnsfilter.lists.model import BlockList, Category


@dataclass(frozen=True, slots=True)
class ListNetworks:
    name: str  #: the list's configured name (a metric label)
    prefixes: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class EgressPlan:
    #: resolvers clients may reach on ports 53 and 853
    approved: tuple[IPAddress, ...]
    #: dnsfilter's own upstreams: this host may reach them, its clients may not
    upstreams: tuple[IPAddress, ...]
    #: lists whose names the monitor looks for (queries to other resolvers, TLS server names)
    lists: tuple[BlockList, ...]
    #: networks of the app lists: always banned
    banned: tuple[ListNetworks, ...]
    #: networks of bypass-category lists (DoH and HTTP DNS entry points): dropped only with drop_doh
    doh: tuple[ListNetworks, ...]
    drop_doh: bool
    allowlist: tuple[str, ...] = ()


def build_plan(
    config: Config, lists: Sequence[BlockList], drop_doh: bool | None = None
) -> EgressPlan:
    """The plan for a validated config and its loaded lists; drop_doh overrides the config's.

    Raises ConfigError when the config leaves something the plan needs undecided.
    """
    problems: list[str] = []
    approved = config.egress.approved_resolvers
    if not approved:
        hosts = [_address(address.host) for address in config.server.listen]
        wildcard = [host for host in hosts if host.is_unspecified]
        if wildcard:
            problems.append(
                f"{config.source}: egress.approved_resolvers: needed because server.listen has "
                f"the wildcard address {wildcard[0]}, which says nothing about where clients "
                "send their queries"
            )
        approved = tuple(dict.fromkeys(hosts))
    chosen = config.egress.lists
    selected = tuple(b for b in lists if chosen is None or b.name in chosen)
    banned = tuple(
        ListNetworks(b.name, _prefixes(b)) for b in selected if b.category is not Category.BYPASS
    )
    doh = tuple(
        ListNetworks(b.name, _prefixes(b)) for b in selected if b.category is Category.BYPASS
    )
    drop = config.egress.drop_doh if drop_doh is None else drop_doh
    if drop and not any(entry.prefixes for entry in doh):
        problems.append(
            f"{config.source}: egress.drop_doh: no list of category bypass with networks is "
            'among the egress lists (add lists.bypass: {file: "shipped:bypass.yaml"})'
        )
    if problems:
        raise ConfigError(problems)
    return EgressPlan(
        approved=approved,
        upstreams=_upstreams(config),
        lists=selected,
        banned=tuple(entry for entry in banned if entry.prefixes),
        doh=tuple(entry for entry in doh if entry.prefixes),
        drop_doh=drop,
        allowlist=config.allowlist,
    )


def _prefixes(blocklist: BlockList) -> tuple[IPNetwork, ...]:
    return tuple(dict.fromkeys(entry.prefix for entry in blocklist.networks))


def _upstreams(config: Config) -> tuple[IPAddress, ...]:
    """Where `dnsfilter serve` forwards: the configured servers, else resolv.conf's (as serve
    reads it); forward zones' servers too."""
    hosts = [server.address.host for server in config.upstream.servers]
    if not config.upstream.servers:
        # Unreadable: serve fails on it with the reason; the export just allows none.
        with contextlib.suppress(OSError):
            hosts.extend(s.host for s in read_resolv_conf(config.upstream.resolv_conf))
    for zone in config.forward_zones:
        hosts.extend(server.address.host for server in zone.servers)
    return tuple(dict.fromkeys(_address(host) for host in hosts))


def _address(host: str) -> IPAddress:
    """The address without its scope (fe80::1%eth0): rules and captures match addresses only."""
    return ipaddress.ip_address(host.partition("%")[0])


def merged(prefixes: Sequence[IPNetwork], version: int) -> list[IPNetwork]:
    """The prefixes of one IP version, overlaps and neighbours merged, in address order."""
    if version == 4:
        v4 = [p for p in prefixes if isinstance(p, ipaddress.IPv4Network)]
        return list(ipaddress.collapse_addresses(v4))
    v6 = [p for p in prefixes if isinstance(p, ipaddress.IPv6Network)]
    return list(ipaddress.collapse_addresses(v6))
