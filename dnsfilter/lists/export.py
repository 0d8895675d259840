"""Blocklists in other servers' formats: RPZ, unbound local-zones, dnsmasq, hosts, nftables sets.

RPZ, unbound and dnsmasq all let the most specific rule win. dnsfilter instead combines
several lists, each list's own exceptions and the allowlist (an exception of one list does
not exempt a name from another list). Copying entries and exceptions across one for one would
therefore block a different set of names whenever lists overlap. Instead, `name_rules` asks
dnsfilter's own DomainTable what it answers at every name any list mentions, and writes a rule
only where that answer differs from the one inherited from the closest rule above. A name
between two mentioned names gets the same answer as its closest mentioned parent in both
worlds, so the export blocks exactly what dnsfilter blocks, with no redundant rules.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dnsfilter import __version__
from dnsfilter.config import Config, PolicyConfig
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import DomainTable
from dnsfilter.errors import ConfigError
from dnsfilter.lists.model import BlockList, role_counts, select_roles
from dnsfilter.names import suffixes


class ExportFormat(enum.Enum):
    RPZ = "rpz"  #: a Response Policy Zone (BIND, unbound `rpz:`, Knot Resolver, PowerDNS)
    HOSTS = "hosts"  #: /etc/hosts lines: exact names only
    DNSMASQ = "dnsmasq"  #: address=/server= lines for a conf-file
    UNBOUND = "unbound"  #: local-zone lines for an unbound.conf `include:`
    NFTABLES = "nftables"  #: the lists' networks as nftables sets


@dataclass(frozen=True, slots=True)
class NameRule:
    """What dnsfilter answers for a name and every name below it, down to the next rule."""

    name: str
    mode: BlockMode | None  #: None: resolved normally (an exception or the allowlist)
    list_name: str = ""  #: the list whose entry blocks it


def generation_time() -> datetime.datetime:
    """Now, or SOURCE_DATE_EPOCH when set, so a build can reproduce an export byte for byte."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Export:
    """Everything an export is made from: the lists, the allowlist and one policy's answers."""

    lists: tuple[BlockList, ...]
    allowlist: tuple[str, ...] = ()
    mode: BlockMode = BlockMode.NULL
    ttl: int = 60
    sinkhole_ipv4: ipaddress.IPv4Address | None = None
    sinkhole_ipv6: ipaddress.IPv6Address | None = None
    source: str = ""  #: the config the lists came from, for the header
    generated: datetime.datetime = field(default_factory=generation_time)


def canonical_key(name: str) -> list[str]:
    """Sort key that keeps a name next to the names below it (DNSSEC canonical order)."""
    return name.split(".")[::-1]


def _mentioned(lists: Sequence[BlockList], allowlist: Iterable[str]) -> list[str]:
    names = {e.domain for b in lists for e in (*b.domains, *b.exceptions)}
    names.update(allowlist)
    # Parents before children, so each name sees every rule that could be inherited.
    return sorted(names, key=lambda n: (n.count("."), n))


def _decide(
    table: DomainTable, mask: int, name: str, mode: BlockMode
) -> tuple[BlockMode | None, str]:
    hit = table.match(name, mask)
    if hit is None:
        return None, ""
    index, entry = hit
    override = table.override(index, entry)
    return (mode if override is None else override), table.lists[index].name


def name_rules(
    lists: Sequence[BlockList], allowlist: Iterable[str] = (), mode: BlockMode = BlockMode.NULL
) -> list[NameRule]:
    """The fewest most-specific-wins rules that answer every name as dnsfilter does."""
    table = DomainTable(lists, allowlist)
    mask = table.mask(b.name for b in lists)
    rules: dict[str, NameRule] = {}
    for name in _mentioned(lists, allowlist):
        action, list_name = _decide(table, mask, name, mode)
        inherited: BlockMode | None = None
        for parent in suffixes(name)[1:]:
            rule = rules.get(parent)
            if rule is not None:
                inherited = rule.mode
                break
        if action is not inherited:
            rules[name] = NameRule(name, action, list_name)
    return sorted(rules.values(), key=lambda r: canonical_key(r.name))


def blocked_names(
    lists: Sequence[BlockList], allowlist: Iterable[str] = (), mode: BlockMode = BlockMode.NULL
) -> list[NameRule]:
    """Every name a list mentions that dnsfilter blocks (for formats without subdomains)."""
    table = DomainTable(lists, allowlist)
    mask = table.mask(b.name for b in lists)
    out = []
    for name in _mentioned(lists, allowlist):
        action, list_name = _decide(table, mask, name, mode)
        if action is not None:
            out.append(NameRule(name, action, list_name))
    return sorted(out, key=lambda r: canonical_key(r.name))


def render(fmt: ExportFormat, export: Export) -> str:
    """The export's text; the same Export always gives the same bytes."""
    if fmt is ExportFormat.RPZ:
        return render_rpz(export)
    if fmt is ExportFormat.UNBOUND:
        return render_unbound(export)
    if fmt is ExportFormat.DNSMASQ:
        return render_dnsmasq(export)
    if fmt is ExportFormat.HOSTS:
        return render_hosts(export)
    return render_nftables(export)


# ---------------------------------------------------------------------------------------
# Header


def _header(fmt: ExportFormat, export: Export, notes: Sequence[str]) -> list[str]:
    stamp = export.generated.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"dnsfilter {__version__}: `dnsfilter lists export --format {fmt.value}`",
        f"generated {stamp} from {export.source or 'the given lists'}",
        "lists:",
    ]
    for b in export.lists:
        lines.append(
            f"  {b.name}: {len(b.domains)} domains, {len(b.exceptions)} exceptions, "
            f"{len(b.networks)} networks ({b.source})"
        )
        roles = role_counts(b)
        if roles.keys() - {"none"}:
            lines.append("    roles: " + ", ".join(f"{r} {n}" for r, n in roles.items()))
    if not export.lists:
        lines.append("  (none)")
    if fmt is not ExportFormat.NFTABLES:
        lines.append(f"allowlist: {len(export.allowlist)} names")
        lines.append(
            f"blocking mode: {export.mode.value} (entries may override it), ttl {export.ttl}"
        )
    lines += notes
    # Paths and list names go into comment lines: keep each on its own line.
    return [line.replace("\n", " ").replace("\r", " ") for line in lines]


def _commented(prefix: str, lines: Sequence[str]) -> list[str]:
    return [f"{prefix} {line}".rstrip() for line in lines]


# ---------------------------------------------------------------------------------------
# RPZ


def render_rpz(export: Export) -> str:
    """A complete zone: load it as any origin (owners are relative; no $ORIGIN)."""
    notes = [
        "Response Policy Zone: `name` and `*.name` carry the same action, so a rule covers",
        "the name and everything below it; rpz-passthru marks exceptions and the allowlist.",
        "Load it with unbound (`rpz:` with name and zonefile) or BIND (response-policy).",
    ]
    if _uses(export, BlockMode.REFUSED):
        notes.append("RPZ has no REFUSED action: refused entries are written as rpz-drop.")
    ttl = export.ttl
    serial = int(export.generated.timestamp()) & 0xFFFFFFFF
    lines = _commented(";", _header(ExportFormat.RPZ, export, notes))
    lines += [
        f"$TTL {ttl}",
        f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}",
        "@ IN NS localhost.",
    ]
    for rule in _with_filled_empty_non_terminals(
        name_rules(export.lists, export.allowlist, export.mode)
    ):
        data = _rpz_data(rule.mode, export)
        for owner in (rule.name, f"*.{rule.name}"):
            lines += [f"{owner} {rtype} {rdata}" for rtype, rdata in data]
    return "\n".join(lines) + "\n"


def _with_filled_empty_non_terminals(rules: Sequence[NameRule]) -> list[NameRule]:
    """The rules, plus the inherited rule at every name between a rule and the one above.

    A rule two or more labels below another (a.b.x under x) makes b.x an empty
    non-terminal of the zone, and an RFC 4592 wildcard does not match at or below one:
    *.x no longer covers b.x or c.b.x, so unbound resolves them. Writing b.x and *.b.x
    with x's action keeps the names below x answered as dnsfilter answers them.
    """
    by_name = {rule.name: rule for rule in rules}
    filled: dict[str, NameRule] = {}
    for rule in rules:
        between: list[str] = []
        for parent in suffixes(rule.name)[1:]:
            cover = by_name.get(parent)
            if cover is not None:
                for name in between:
                    filled.setdefault(name, NameRule(name, cover.mode, cover.list_name))
                break
            between.append(parent)
    if not filled:
        return list(rules)
    return sorted([*rules, *filled.values()], key=lambda r: canonical_key(r.name))


def _rpz_data(mode: BlockMode | None, export: Export) -> list[tuple[str, str]]:
    if mode is None:
        return [("CNAME", "rpz-passthru.")]
    if mode is BlockMode.NXDOMAIN:
        return [("CNAME", ".")]
    if mode is BlockMode.REFUSED:
        return [("CNAME", "rpz-drop.")]
    ipv4, ipv6 = _addresses(mode, export)
    data = [("A", str(ipv4))] if ipv4 else []
    data += [("AAAA", str(ipv6))] if ipv6 else []
    # NODATA, and a sinkhole without addresses (which answers NODATA in dnsfilter too).
    return data or [("CNAME", "*.")]


def _addresses(
    mode: BlockMode, export: Export
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The A and AAAA answers of a blocking mode; None where dnsfilter answers NODATA."""
    if mode is BlockMode.NULL:
        return ipaddress.IPv4Address(0), ipaddress.IPv6Address(0)
    if mode is BlockMode.SINKHOLE:
        return export.sinkhole_ipv4, export.sinkhole_ipv6
    return None, None


def _uses(export: Export, mode: BlockMode) -> bool:
    if export.mode is mode:
        return True
    return any(e.mode is mode for b in export.lists for e in b.domains)


# ---------------------------------------------------------------------------------------
# unbound


_UNBOUND_TYPES = {
    BlockMode.NULL: "always_null",
    BlockMode.NXDOMAIN: "always_nxdomain",
    BlockMode.NODATA: "always_nodata",
    BlockMode.REFUSED: "always_refuse",
}


def render_unbound(export: Export) -> str:
    """`server:` local-zone lines; include the file from unbound.conf with `include:`."""
    notes = [
        "unbound local-zones: a zone covers the name and everything below it, the most",
        "specific zone wins; transparent zones are exceptions and the allowlist.",
        "Include it from unbound.conf (`include: FILE`). always_* zones answer with",
        "unbound's own TTL, not the policy's ttl.",
    ]
    lines = _commented("#", _header(ExportFormat.UNBOUND, export, notes))
    lines.append("server:")
    for rule in name_rules(export.lists, export.allowlist, export.mode):
        zone = f'"{rule.name}."'
        if rule.mode is None:
            lines.append(f"\tlocal-zone: {zone} transparent")
            continue
        if rule.mode is not BlockMode.SINKHOLE:
            lines.append(f"\tlocal-zone: {zone} {_UNBOUND_TYPES[rule.mode]}")
            continue
        ipv4, ipv6 = _addresses(rule.mode, export)
        if ipv4 is None and ipv6 is None:
            lines.append(f"\tlocal-zone: {zone} always_nodata")
            continue
        # redirect answers every name below the zone from the zone apex's local-data.
        lines.append(f"\tlocal-zone: {zone} redirect")
        for rtype, address in (("A", ipv4), ("AAAA", ipv6)):
            if address is not None:
                lines.append(f'\tlocal-data: "{rule.name}. {export.ttl} IN {rtype} {address}"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# dnsmasq


def render_dnsmasq(export: Export) -> str:
    """Lines for a dnsmasq conf-file (`conf-file=FILE` or a file in /etc/dnsmasq.d/)."""
    notes = [
        "dnsmasq: /name/ covers the name and everything below it; the most specific wins.",
        "server=/name/# sends exceptions and the allowlist to the usual upstream servers.",
        "Blocked answers carry dnsmasq's local-ttl, not the policy's ttl.",
    ]
    inexpressible = [m for m in (BlockMode.NODATA, BlockMode.REFUSED) if _uses(export, m)]
    if inexpressible:
        modes = " and ".join(m.value for m in inexpressible)
        notes.append(f"dnsmasq cannot answer {modes} for a domain: those entries answer NXDOMAIN.")
    lines = _commented("#", _header(ExportFormat.DNSMASQ, export, notes))
    for rule in name_rules(export.lists, export.allowlist, export.mode):
        if rule.mode is None:
            lines.append(f"server=/{rule.name}/#")
            continue
        ipv4, ipv6 = _addresses(rule.mode, export)
        if ipv4 is None and ipv6 is None:
            # address=/name/ without an address is dnsmasq's NXDOMAIN.
            lines.append(f"address=/{rule.name}/")
            continue
        lines += [f"address=/{rule.name}/{a}" for a in (ipv4, ipv6) if a is not None]
        # Without local=, dnsmasq forwards every other type (and the family with no
        # address) upstream; with it they get NODATA, as from dnsfilter.
        lines.append(f"local=/{rule.name}/")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# hosts


def render_hosts(export: Export) -> str:
    """/etc/hosts lines for every blocked name the lists mention."""
    notes = [
        "hosts files match exact names only: names BELOW these entries are NOT blocked",
        "(a.tiktok.com is not covered by tiktok.com). Use rpz, unbound or dnsmasq for that.",
        "Every blocking mode is written as an address (NXDOMAIN cannot be expressed).",
    ]
    lines = _commented("#", _header(ExportFormat.HOSTS, export, notes))
    for rule in blocked_names(export.lists, export.allowlist, export.mode):
        assert rule.mode is not None
        ipv4, ipv6 = _addresses(rule.mode, export)
        if rule.mode is not BlockMode.SINKHOLE or (ipv4 is None and ipv6 is None):
            ipv4, ipv6 = ipaddress.IPv4Address(0), None
        lines += [f"{a} {rule.name}" for a in (ipv4, ipv6) if a is not None]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# nftables


_NFT_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def nft_set_name(list_name: str, version: int) -> str:
    """The set of one list and IP version: dnsfilter_<list>_v4 (nft names allow no '-')."""
    return f"dnsfilter_{_NFT_UNSAFE.sub('_', list_name)}_v{version}"


def render_nftables(export: Export) -> str:
    """One interval set per list and IP version in `table inet dnsfilter`, for `nft -f`.

    The sets go into the table `dnsfilter egress export` writes, next to its own sets, so
    rules there or elsewhere can match `ip daddr @dnsfilter_wechat_v4`. Each set is flushed
    before it is filled, so loading the file again replaces the sets' elements and touches
    nothing else in the table.
    """
    # Shared with the egress ruleset, so both exports render sets the same way.
    from dnsfilter.egress.nftables import TABLE
    from dnsfilter.egress.nftables import _set as render_set
    from dnsfilter.egress.plan import merged

    notes = [
        "nftables sets of the lists' networks: `nft -f FILE`. Reloading replaces the sets'",
        f"elements and leaves the rest of table inet {TABLE} alone.",
    ]
    lines = ["#!/usr/sbin/nft -f", *_commented("#", _header(ExportFormat.NFTABLES, export, notes))]
    empty: list[str] = []
    filled: list[str] = []
    for b in export.lists:
        prefixes = [entry.prefix for entry in b.networks]
        for version in (4, 6):
            name = nft_set_name(b.name, version)
            elements = [str(p) for p in merged(prefixes, version)]
            empty += render_set(name, version, [], interval=True)
            filled += [f"\t# {b.name}: {len(elements)} IPv{version} prefixes (merged)"]
            filled += render_set(name, version, elements, interval=True)
    if not export.lists:
        return "\n".join(lines) + "\n"
    # Declared empty first so the flush finds the sets on the very first load as well.
    lines += [f"table inet {TABLE} {{", *empty, "}"]
    lines += [
        f"flush set inet {TABLE} {nft_set_name(b.name, v)}" for b in export.lists for v in (4, 6)
    ]
    lines += [f"table inet {TABLE} {{", *filled, "}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# From a config


def export_from_config(
    config: Config,
    lists: Sequence[BlockList],
    policy: str | None = None,
    names: Sequence[str] = (),
    generated: datetime.datetime | None = None,
) -> Export:
    """The Export of a loaded config: named lists (default: the policy's, else all) and the
    policy's answers; without a policy, the answers every policy agrees on.

    Raises ConfigError when a name is unknown or the policies answer differently.
    """
    by_name = {b.name: b for b in lists}
    chosen = _choose_policy(config, policy)
    if names:
        wanted = list(names)
    elif policy is not None and chosen is not None:
        wanted = list(chosen.lists)
    else:
        wanted = list(by_name)
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none"
        raise ConfigError(
            [f"{config.source}: no list {', '.join(map(repr, unknown))} (lists: {known})"]
        )
    mode, ttl, ipv4, ipv6 = (
        _policy_answers(chosen) if chosen is not None else (BlockMode.NULL, 60, None, None)
    )
    # A named policy that enforces some roles of a list exports only those entries.
    narrowing = chosen if policy is not None else None
    return Export(
        lists=tuple(
            select_roles(by_name[name], narrowing.roles_for(name)) if narrowing else by_name[name]
            for name in dict.fromkeys(wanted)
        ),
        allowlist=config.allowlist,
        mode=mode,
        ttl=ttl,
        sinkhole_ipv4=ipv4,
        sinkhole_ipv6=ipv6,
        source=config.source,
        generated=generated or generation_time(),
    )


def _choose_policy(config: Config, name: str | None) -> PolicyConfig | None:
    """The named policy; without a name, any policy when they all answer alike."""
    if name is not None:
        for candidate in config.policies:
            if candidate.name == name:
                return candidate
        known = ", ".join(p.name for p in config.policies) or "none"
        raise ConfigError([f"{config.source}: no policy {name!r} (policies: {known})"])
    if len({_policy_answers(p) for p in config.policies}) > 1:
        described = "; ".join(f"{p.name}: {p.mode.value}, ttl {p.ttl}" for p in config.policies)
        raise ConfigError(
            [
                f"{config.source}: the policies answer blocked names differently "
                f"({described}); choose one with --policy"
            ]
        )
    return config.policies[0] if config.policies else None


def _policy_answers(
    policy: PolicyConfig,
) -> tuple[BlockMode, int, ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    return policy.mode, policy.ttl, policy.sinkhole_ipv4, policy.sinkhole_ipv6
