"""`dnsfilter explain`: why a name is blocked or allowed for a client, and what it is answered.

The verdict and the reply come from the same Policy and Resolver.answer_now that `serve`
runs, on a query built as a client would send it, so the explanation cannot drift from the
resolver. On top of that it walks every loaded list by hand to show what else matched: other
lists, lists the client's policy does not enforce, and the exceptions and allowlist entries
that overrode a block.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dnslib import DNSRecord

from dnsfilter.config import Config, PolicyConfig
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.datapath.policy import Action, Verdict, build_policy
from dnsfilter.datapath.resolver import Resolver, ZoneRouter
from dnsfilter.datapath.upstream import UpstreamAnswer
from dnsfilter.datapath.wire import (
    EdeCode,
    QType,
    Query,
    Rcode,
    Transport,
    make_query,
    opt_record,
    parse_query,
)
from dnsfilter.errors import UpstreamError
from dnsfilter.lists.model import (
    ROLES,
    BlockList,
    DomainEntry,
    RejectedEntry,
    Role,
    is_selected,
)
from dnsfilter.names import InvalidName, normalize_domain, suffixes

_OPT_CODE_EDE = 15


class ExplainError(Exception):
    """The name, client address or query type cannot be used."""


class _NoUpstream:
    """explain never forwards: answer_now settles everything that does not need the network."""

    async def forward(self, q: Query) -> UpstreamAnswer:
        raise UpstreamError("explain does not forward queries")


@dataclass(frozen=True, slots=True)
class Match:
    """One entry or exception of a list that covers the name."""

    list_name: str
    source: str
    kind: str  #: "entry" or "exception"
    entry: DomainEntry
    enforced: bool  #: the client's policy enforces this list (and, for an entry, its role)
    list_enforced: bool = True  #: the client's policy enforces the list at all


@dataclass(frozen=True, slots=True)
class Explanation:
    name: str
    qtype: int
    client: str
    verdict: Verdict
    policy: PolicyConfig | None  #: None when the client is in no network
    blocked_by: Match | None
    mode: BlockMode | None  #: the mode the reply used (block only)
    mode_from_entry: bool
    matches: tuple[Match, ...]
    allowlisted_by: str  #: the allowlist name that covers the query name, or ""
    overrides: tuple[str, ...]  #: sentences: what kept a matching entry from blocking
    rejected: tuple[tuple[str, RejectedEntry], ...]  #: (list, record) of rejected suffixes
    reply: bytes | None  #: None: the query is forwarded
    forward_to: str  #: where an allowed query goes


def parse_qtype(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        value = int(name)
    elif name.startswith("TYPE") and name[4:].isdigit():
        value = int(name[4:])
    elif name in QType.__members__:
        value = int(QType[name])
    else:
        known = ", ".join(t.name for t in QType if t is not QType.OPT)
        raise ExplainError(f"unknown query type {text!r} ({known}, or TYPEnnn)")
    if not 0 < value < 65536:
        raise ExplainError(f"query type {value} is out of range")
    return value


def explain(
    config: Config,
    lists: Sequence[BlockList],
    name: str,
    client: str = "127.0.0.1",
    qtype: str = "A",
) -> Explanation:
    """The explanation for a loaded config; ExplainError for a bad name, client or type."""
    try:
        qname = normalize_domain(name)
    except InvalidName as exc:
        raise ExplainError(f"invalid name {name!r}: {exc}") from None
    try:
        address = str(ipaddress.ip_address(client))
    except ValueError:
        raise ExplainError(f"invalid client address {client!r}") from None
    rtype = parse_qtype(qtype)

    policy = build_policy(config, lists)
    resolver = Resolver(policy, ZoneRouter(_NoUpstream(), {}), cache=None)
    # With EDNS, as most clients send it: the reply then carries its Extended DNS Error.
    wire = make_query(qname, rtype, msg_id=0)
    wire = wire[:10] + b"\x00\x01" + wire[12:] + opt_record(False)
    query = parse_query(wire, (address, 0), Transport.UDP)
    result = resolver.answer_now(query)
    if isinstance(result, Verdict):
        verdict, reply = result, None
    else:
        verdict, reply = result.verdict, result.wire

    chosen = None
    if verdict.rule is not None:
        chosen = next(p for p in config.policies if p.name == verdict.rule.policy)
    matches = _matches(lists, qname, chosen)
    allowlist = set(config.allowlist)
    allowlisted_by = next((s for s in suffixes(qname) if s in allowlist), "")

    blocked_by = None
    mode = None
    if verdict.action is Action.BLOCK and verdict.rule is not None:
        blocked_by = next(
            m
            for m in matches
            if m.kind == "entry"
            and m.list_name == verdict.list_name
            and m.entry.domain == verdict.entry
        )
        mode = verdict.mode or verdict.rule.answers.mode
    return Explanation(
        name=qname,
        qtype=rtype,
        client=address,
        verdict=verdict,
        policy=chosen,
        blocked_by=blocked_by,
        mode=mode,
        mode_from_entry=verdict.mode is not None,
        matches=matches,
        allowlisted_by=allowlisted_by,
        overrides=_overrides(matches, allowlisted_by, config.source, verdict.list_name),
        rejected=_rejected(lists, qname),
        reply=reply,
        forward_to=_forward_to(config, qname) if verdict.action is Action.ALLOW else "",
    )


def _matches(
    lists: Sequence[BlockList], qname: str, policy: PolicyConfig | None
) -> tuple[Match, ...]:
    names = suffixes(qname)
    enforced = set(policy.lists) if policy else set()
    out = []
    for blocklist in lists:
        list_enforced = blocklist.name in enforced
        roles = policy.roles_for(blocklist.name) if policy else ROLES
        for kind, entries in (("entry", blocklist.domains), ("exception", blocklist.exceptions)):
            by_name = {e.domain: e for e in entries}
            for n in names:
                if n not in by_name:
                    continue
                entry = by_name[n]
                chosen = kind == "exception" or is_selected(entry, roles)
                out.append(
                    Match(
                        blocklist.name,
                        blocklist.source,
                        kind,
                        entry,
                        list_enforced and chosen,
                        list_enforced,
                    )
                )
    return tuple(out)


def _rejected(lists: Sequence[BlockList], qname: str) -> tuple[tuple[str, RejectedEntry], ...]:
    names = suffixes(qname)
    out = []
    for blocklist in lists:
        by_name = {r.domain: r for r in blocklist.rejected}
        out += [(blocklist.name, by_name[n]) for n in names if n in by_name]
    return tuple(out)


def _overrides(
    matches: Sequence[Match], allowlisted_by: str, source: str, blocked_by: str = ""
) -> tuple[str, ...]:
    out = []
    blocking = []
    enforced = [m for m in matches if m.enforced]
    for list_name in dict.fromkeys(m.list_name for m in enforced):
        entries = [m for m in enforced if m.list_name == list_name and m.kind == "entry"]
        exceptions = [m for m in enforced if m.list_name == list_name and m.kind == "exception"]
        if entries and exceptions and list_name == blocked_by:
            # An $important entry, or the more specific rule of an RPZ list, won.
            x, e = exceptions[0], entries[0]
            out.append(
                f"entry {e.entry.domain} (line {e.entry.line}) of list {list_name} "
                f"overrides its exception {x.entry.domain} (line {x.entry.line})"
            )
            blocking.append(e)
        elif entries and exceptions:
            x, e = exceptions[0], entries[0]
            out.append(
                f"exception {x.entry.domain} (line {x.entry.line}) of list {list_name} "
                f"overrides its entry {e.entry.domain} (line {e.entry.line})"
            )
        elif entries:
            blocking.append(entries[0])
    if allowlisted_by and blocking:
        out += [
            f"allowlist entry {allowlisted_by} ({source}) overrides list {m.list_name} "
            f"entry {m.entry.domain} (line {m.entry.line})"
            for m in blocking
        ]
    return tuple(out)


def _forward_to(config: Config, qname: str) -> str:
    zones = {zone.zone: zone for zone in config.forward_zones}
    for name in suffixes(qname):
        zone = zones.get(name)
        if zone is not None:
            servers = ", ".join(s.name for s in zone.servers)
            return f"forward zone {zone.zone}: {servers}"
    if config.upstream.servers:
        return "upstream: " + ", ".join(s.name for s in config.upstream.servers)
    return f"upstream: the nameservers in {config.upstream.resolv_conf}"


# ---------------------------------------------------------------------------------------
# Output


def _type_name(qtype: int) -> str:
    try:
        return QType(qtype).name
    except ValueError:
        return f"TYPE{qtype}"


def decode_reply(wire: bytes) -> dict[str, Any]:
    """rcode, records (zone-file lines) and Extended DNS Errors of a reply, via dnslib."""
    record = DNSRecord.parse(wire)
    rcode = record.header.rcode
    try:
        rcode_name = Rcode(rcode).name
    except ValueError:
        rcode_name = str(rcode)
    ede = []
    for rr in record.ar:
        for option in rr.rdata if isinstance(rr.rdata, list) else ():
            if option.code == _OPT_CODE_EDE and len(option.data) >= 2:
                code = int.from_bytes(option.data[:2], "big")
                try:
                    label = EdeCode(code).name.replace("_", " ").title()
                except ValueError:
                    label = "?"
                text = option.data[2:].decode("utf-8", "replace")
                ede.append(f"EDE {code} ({label}): {text}")
    return {
        "rcode": rcode_name,
        "answer": [rr.toZone() for rr in record.rr],
        "authority": [rr.toZone() for rr in record.auth],
        "ede": ede,
    }


def _entry_json(m: Match) -> dict[str, Any]:
    e = m.entry
    return {
        "list": m.list_name,
        "source": m.source,
        "kind": m.kind,
        "domain": e.domain,
        "line": e.line,
        "note": e.note,
        "evidence": e.evidence,
        "added": e.added,
        "mode": e.mode.value if e.mode else None,
        "roles": [r.value for r in e.roles],
        "enforced": m.enforced,
    }


def render_json(x: Explanation) -> str:
    rule = x.verdict.rule
    document = {
        "name": x.name,
        "qtype": _type_name(x.qtype),
        "client": x.client,
        "network": rule.network if rule else None,
        "policy": x.policy.name if x.policy else None,
        "verdict": x.verdict.action.value,
        "list": x.verdict.list_name or None,
        "entry": _entry_json(x.blocked_by) if x.blocked_by else None,
        "mode": x.mode.value if x.mode else None,
        "mode_from_entry": x.mode_from_entry,
        "allowlisted_by": x.allowlisted_by or None,
        "overrides": list(x.overrides),
        "matches": [_entry_json(m) for m in x.matches],
        "rejected": [
            {
                "list": list_name,
                "domain": r.domain,
                "line": r.line,
                "reason": r.reason,
                "source": r.source,
            }
            for list_name, r in x.rejected
        ],
        "answer": decode_reply(x.reply) if x.reply is not None else None,
        "forward_to": x.forward_to or None,
    }
    return json.dumps(document, indent=2) + "\n"


def render_text(x: Explanation) -> str:
    rule = x.verdict.rule
    lines = [f"name:     {x.name} ({_type_name(x.qtype)})"]
    if rule is None or x.policy is None:
        lines.append(f"client:   {x.client}: in no configured network")
    else:
        p = x.policy
        lists = ", ".join(_list_label(p, name) for name in p.lists) or "none"
        lines.append(
            f"client:   {x.client}: network {rule.network}, policy {p.name} "
            f"(lists: {lists}; mode {p.mode.value}, ttl {p.ttl})"
        )
    lines.append(f"verdict:  {x.verdict.action.value}")
    if x.blocked_by is not None:
        e = x.blocked_by.entry
        lines.append(
            f"matched:  list {x.blocked_by.list_name}, entry {e.domain} "
            f"(line {e.line} of {x.blocked_by.source})"
        )
        lines += _entry_details(e, "          ")
    if x.mode is not None:
        origin = "the entry's own mode" if x.mode_from_entry else "the policy's mode"
        lines.append(f"mode:     {x.mode.value} ({origin})")
    if x.reply is not None:
        decoded = decode_reply(x.reply)
        lines.append(f"answer:   {decoded['rcode']}")
        lines += [f"          {record}" for record in decoded["answer"]]
        lines += [f"          {record}  ; authority" for record in decoded["authority"]]
        lines += [f"          {ede}" for ede in decoded["ede"]]
    if x.forward_to:
        lines.append(f"answer:   resolved normally, {x.forward_to}")
    if x.allowlisted_by:
        lines.append(f"allowlist: {x.allowlisted_by}")
    lines += [f"override: {sentence}" for sentence in x.overrides]
    others = [m for m in x.matches if m is not x.blocked_by]
    if others:
        lines.append("also matched:")
        for m in others:
            roles = f", role {_roles_text(m.entry)}" if m.entry.roles else ""
            if m.enforced:
                enforced = ""
            elif m.list_enforced:
                enforced = ", its role is not enforced for this client"
            else:
                enforced = ", not enforced for this client"
            lines.append(
                f"  list {m.list_name} {m.kind} {m.entry.domain} "
                f"(line {m.entry.line}{roles}{enforced})"
            )
    for list_name, r in x.rejected:
        lines.append(
            f"rejected: list {list_name} does not block {r.domain} (line {r.line}): "
            f"{' '.join(r.reason.split())} [source: {r.source}]"
        )
    return "\n".join(lines) + "\n"


def _list_label(policy: PolicyConfig, name: str) -> str:
    chosen = policy.roles_for(name)
    if chosen == ROLES:
        return name
    return f"{name} (roles: {', '.join(r.value for r in Role if r in chosen)})"


def _roles_text(e: DomainEntry) -> str:
    return ", ".join(r.value for r in e.roles)


def _entry_details(e: DomainEntry, indent: str) -> list[str]:
    out = [f"{indent}{'role:':<10}{_roles_text(e)}"] if e.roles else []
    for label, value in (("note", e.note), ("evidence", e.evidence), ("added", e.added)):
        if value:
            out.append(f"{indent}{label + ':':<10}{' '.join(value.split())}")
    return out
