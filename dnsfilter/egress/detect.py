"""Which packets went around the resolver: decoded packet facts in, bypass events out.

Pure and synchronous like policy.py: no capture, no I/O, no scapy; the only state is a bounded
table of recent flows, driven by the packets' own timestamps, so one capture file always gives
the same events.

What counts, once each:
  dns_other_resolver   a DNS query (UDP or TCP, port 53) to an address that is not an approved
                       resolver; per query message
  dot_other_resolver   DNS over TLS (TCP 853) or over QUIC (UDP 853) to such an address; per flow
  sni_doh_resolver     a TLS ClientHello naming an entry of a bypass-category list; per flow
  sni_blocked          a TLS ClientHello naming an entry of any other egress list; per flow
  flow_banned_prefix   TCP or UDP (QUIC included) to an address in an egress list's networks;
                       per flow
Queries from an approved resolver itself are its forwarding, not a bypass. A flow is the
(protocol, client, client port, server, server port) tuple; it counts again after
flow_timeout seconds without a packet.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from dnsfilter.config import RESERVED_NETWORK
from dnsfilter.datapath.policy import DomainTable, NetworkMap
from dnsfilter.egress.decode import DNS_PORT, Facts
from dnsfilter.egress.plan import EgressPlan
from dnsfilter.lists.model import Category

DOT_PORT = 853
#: Seconds a flow may be silent and still be the same flow.
DEFAULT_FLOW_TIMEOUT = 60.0
#: Flows remembered at once; past it the least recently seen is forgotten.
DEFAULT_MAX_FLOWS = 65536


class EventKind(enum.Enum):
    DNS_OTHER_RESOLVER = "dns_other_resolver"  #: plain DNS to an unapproved resolver
    DOT_OTHER_RESOLVER = "dot_other_resolver"  #: DoT/DoQ to an unapproved resolver
    SNI_DOH_RESOLVER = "sni_doh_resolver"  #: TLS to a name on a bypass list
    SNI_BLOCKED = "sni_blocked"  #: TLS to a name on an app list
    FLOW_BANNED_PREFIX = "flow_banned_prefix"  #: any flow into a list's networks


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    network: str  #: the client's configured network, or RESERVED_NETWORK ("none")
    list_name: str  #: the list that matched, "" when none did (a query for an unlisted name)
    client: str  #: source address (never a metric label)
    destination: str  #: ADDR:PORT, [V6ADDR]:PORT
    detail: str = ""  #: the query name or TLS server name, when there is one
    time: float = 0.0  #: the packet's timestamp (Unix time)


class Detector:
    """Classifies Facts against an EgressPlan; clients map to networks through NetworkMap."""

    def __init__(
        self,
        plan: EgressPlan,
        clients: NetworkMap,
        flow_timeout: float = DEFAULT_FLOW_TIMEOUT,
        max_flows: int = DEFAULT_MAX_FLOWS,
    ) -> None:
        self._clients = clients
        # Canonical text through the decoder's own function, so the set compares equal.
        self._approved = frozenset(_ntop(address) for address in plan.approved)
        self._banned = NetworkMap(
            (entry.name, entry.prefixes) for entry in (*plan.banned, *plan.doh)
        )
        self._names = DomainTable(plan.lists, plan.allowlist)
        self._all_lists = self._names.mask(b.name for b in plan.lists)
        self._bypass = tuple(b.category is Category.BYPASS for b in plan.lists)
        self._flows: OrderedDict[tuple[EventKind, int, str, int, str, int], float] = OrderedDict()
        self._timeout = flow_timeout
        self._max_flows = max_flows

    def classify(self, facts: Facts, now: float) -> list[Event]:
        """The events one packet raises (usually none); now is the packet's timestamp."""
        events: list[Event] = []
        banned = self._banned.lookup(facts.dst)
        if banned is not None and self._new_flow(EventKind.FLOW_BANNED_PREFIX, facts, now):
            events.append(self._event(EventKind.FLOW_BANNED_PREFIX, facts, now, banned))
        dport = facts.dport
        if (
            dport in (DNS_PORT, DOT_PORT)
            and facts.dst not in self._approved
            and facts.src not in self._approved
        ):
            if facts.dns_query:
                listed = self._listed(facts.qname)
                name = "" if listed is None else listed[0]
                events.append(
                    self._event(EventKind.DNS_OTHER_RESOLVER, facts, now, name, facts.qname)
                )
            elif dport == DOT_PORT and self._new_flow(EventKind.DOT_OTHER_RESOLVER, facts, now):
                events.append(self._event(EventKind.DOT_OTHER_RESOLVER, facts, now, ""))
        if facts.sni:
            listed = self._listed(facts.sni)
            if listed is not None:
                name, bypass = listed
                kind = EventKind.SNI_DOH_RESOLVER if bypass else EventKind.SNI_BLOCKED
                if self._new_flow(kind, facts, now):
                    events.append(self._event(kind, facts, now, name, facts.sni))
        return events

    def _listed(self, name: str) -> tuple[str, bool] | None:
        """(list name, is a bypass list) of the list that blocks name, if one does."""
        if not name:
            return None
        hit = self._names.match(name, self._all_lists)
        if hit is None:
            return None
        index = hit[0]
        return self._names.lists[index].name, self._bypass[index]

    def _event(
        self, kind: EventKind, facts: Facts, now: float, list_name: str, detail: str = ""
    ) -> Event:
        dst = facts.dst
        destination = f"[{dst}]:{facts.dport}" if ":" in dst else f"{dst}:{facts.dport}"
        network = self._clients.lookup(facts.src) or RESERVED_NETWORK
        return Event(kind, network, list_name, facts.src, destination, detail, now)

    def _new_flow(self, kind: EventKind, facts: Facts, now: float) -> bool:
        key = (kind, facts.proto, facts.src, facts.sport, facts.dst, facts.dport)
        flows = self._flows
        last = flows.get(key)
        flows[key] = now
        if last is not None:
            flows.move_to_end(key)
            # Timestamps out of order (several capture queues) give a negative gap: same flow.
            return now - last >= self._timeout
        if len(flows) > self._max_flows:
            flows.popitem(last=False)
        return True


def _ntop(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return socket.inet_ntop(family, address.packed)


def event_labels(plan: EgressPlan, networks: Sequence[str]) -> list[tuple[str, str, str]]:
    """Every (network, kind, list) an event of this plan can carry, as classify labels them:
    the configured networks and RESERVED_NETWORK, times the lists each kind can name."""
    every = [b.name for b in plan.lists]
    lists_by_kind = {
        EventKind.DNS_OTHER_RESOLVER: ["", *every],
        EventKind.DOT_OTHER_RESOLVER: [""],
        EventKind.SNI_DOH_RESOLVER: [b.name for b in plan.lists if b.category is Category.BYPASS],
        EventKind.SNI_BLOCKED: [b.name for b in plan.lists if b.category is not Category.BYPASS],
        EventKind.FLOW_BANNED_PREFIX: [entry.name for entry in (*plan.banned, *plan.doh)],
    }
    return [
        (network, kind.value, list_name)
        for network in dict.fromkeys([*networks, RESERVED_NETWORK])
        for kind in EventKind
        for list_name in lists_by_kind[kind]
    ]
