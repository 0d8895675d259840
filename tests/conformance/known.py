"""Every difference between dnsfilter and unbound that the suite expects, once, with why.

A row selects the cases it covers (by question or raw-case tag), the fields it explains
and, where the field alone is not precise enough, what the two values must be. Status:

- DELIBERATE: dnsfilter answers otherwise on purpose; the reason says why.
- OPEN: a known difference that is not fixed yet; the issue that will fix it. Whoever fixes
  it deletes the row (the suite fails while a row explains nothing, so it cannot linger).
- REFERENCE: unbound's answer is the odd one; dnsfilter's is the one RFCs ask for.

Any difference no row explains fails the suite.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import dns.name

from tests.conformance.compare import Difference
from tests.conformance.observe import Case
from tests.conformance.zones import BLOCKED, BLOCKED_NX


class Status(enum.Enum):
    DELIBERATE = "deliberate"
    OPEN = "open"
    REFERENCE = "unbound is the odd one"


class Known(NamedTuple):
    rule: str
    status: Status
    issue: str  #: the issue that decided it or will fix it
    select: Callable[[Case], bool]
    fields: frozenset[str]  #: the fields explained; "*" for every field of the case
    unbound: str  #: what unbound answers (as observed)
    dnsfilter: str  #: what dnsfilter answers (as observed)
    reason: str
    check: Callable[[Difference], bool] = lambda d: True

    def explains(self, d: Difference) -> bool:
        return (
            ("*" in self.fields or d.field in self.fields) and self.select(d.case) and self.check(d)
        )


def asks(*qnames: str, qtype: str | None = None) -> Callable[[Case], bool]:
    """Cases asking one of qnames (any letter case), of qtype if given."""
    names = {dns.name.from_text(n) for n in qnames}

    def select(case: Case) -> bool:
        q = case.question
        return (
            q is not None
            and dns.name.from_text(q.qname) in names
            and (qtype is None or q.qtype == qtype)
        )

    return select


def tagged(tag: str) -> Callable[[Case], bool]:
    return lambda case: tag in case.tags


def _fields(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _udp_4096(case: Case) -> bool:
    v = case.variant
    return v is not None and v.transport == "udp" and v.payload == 4096


KNOWN: tuple[Known, ...] = (
    # -- deliberate -------------------------------------------------------------------------
    Known(
        "udp-payload-capped-at-1232",
        Status.DELIBERATE,
        "17",
        lambda c: _udp_4096(c) and asks("bigtxt.conf.test.")(c),
        _fields("flag.tc answer authority additional"),
        "the 2.1 kB TXT answer whole over UDP (the client offered 4096)",
        "TC=1, empty: replies are capped at udp_payload_size (1232)",
        "DNS Flag Day 2020: 1232 avoids IP fragmentation, which off-path spoofing relies on; "
        "the client retries over TCP",
        lambda d: d.field != "flag.tc" or (d.unbound, d.dnsfilter) == ("0", "1"),
    ),
    Known(
        "any-minimal-answer",
        Status.DELIBERATE,
        "17",
        asks("www.conf.test.", qtype="ANY"),
        _fields("answer authority additional ttl.answer"),
        "every record of the name (A and AAAA) from nsd",
        'one synthetic HINFO "RFC8482" "" standing for them (TTL the smallest of theirs)',
        "RFC 8482 4.2 lets a resolver answer ANY with a subset; ANY is the favourite query of "
        "reflection attacks",
    ),
    Known(
        "blocked-not-authoritative",
        Status.DELIBERATE,
        "13",
        asks(BLOCKED, BLOCKED_NX),
        _fields("flag.aa"),
        "AA=1 (a local-zone always_null / always_nxdomain answer)",
        "AA=0",
        "dnsfilter is not the authority for a name it blocks (RFC 1035 4.1.1); the answer is "
        "a policy's, like every other answer it gives",
        lambda d: (d.unbound, d.dnsfilter) == ("1", "0"),
    ),
    Known(
        "blocked-ede",
        Status.DELIBERATE,
        "13",
        asks(BLOCKED, BLOCKED_NX),
        _fields("edns.options"),
        "no EDNS option (unbound's `ede: no` default)",
        "EDE 15 Blocked, with the list's name",
        "RFC 8914: tells the client (and its user) why the name does not resolve",
        lambda d: d.dnsfilter == "['ede:15']",
    ),
    Known(
        "blocked-negative-soa",
        Status.DELIBERATE,
        "13",
        asks(BLOCKED, BLOCKED_NX),
        _fields("authority"),
        "NODATA / NXDOMAIN without an SOA",
        "a synthetic SOA dnsfilter.invalid. with the policy TTL (default 60) as MINIMUM",
        "RFC 2308 5: a negative answer without an SOA must not be cached downstream; the SOA "
        "makes the stub's cache keep it for the policy's TTL",
        lambda d: d.unbound == "{}" and "dnsfilter.invalid." in d.dnsfilter,
    ),
    Known(
        "servfail-ede",
        Status.DELIBERATE,
        "13",
        asks("unserved.example.", "loop1.conf.test.", "outside.conf.test."),
        _fields("edns.options"),
        "SERVFAIL without an EDNS option (`ede: no` default)",
        "SERVFAIL with EDE 23 Network Error (unserved.example, and outside.conf.test whose "
        "CNAME leads there: nsd REFUSEs it) or EDE 0 (loop1: the CNAME loop, issue 17)",
        "RFC 8914: says why the resolution failed",
        lambda d: d.unbound == "[]" and d.dnsfilter in ("['ede:23']", "['ede:0']"),
    ),
    Known(
        "minimal-responses-ns-glue",
        Status.DELIBERATE,
        "13",
        asks("conf.test.", qtype="NS"),
        _fields("additional"),
        "the address of ns1.conf.test (it keeps glue for an NS query even with minimal-responses)",
        "nothing: with server.minimal_responses (on by default) additional is empty",
        "smaller replies, less for a reflection attack; the stub asks for the address it needs",
        lambda d: d.dnsfilter == "{}",
    ),
    Known(
        "chaos-identity",
        Status.DELIBERATE,
        "13",
        tagged("chaos"),
        _fields("*"),
        'its own version (version.bind CH TXT "unbound 1.17.1"; `hide-version: no`)',
        "forwarded to nsd, which REFUSEs CHAOS: SERVFAIL",
        "dnsfilter never discloses its version or host name; CHAOS queries are the "
        "upstream's to answer",
    ),
    Known(
        "negative-answer-ttl-clamp",
        Status.DELIBERATE,
        "13",
        asks("dangling.conf.test.", "nope.olddept.conf.test."),
        _fields("ttl.answer"),
        "the CNAME / DNAME of an NXDOMAIN answer keeps its TTL (3600)",
        "every record clamped to the negative TTL (900, the SOA MINIMUM)",
        "RFC 2308 5 caches the whole negative answer for the negative TTL; no record outlives "
        "the proof it came with (docs/operators/protocol-behaviour.md: Cache)",
    ),
    Known(
        "referral-not-cached",
        Status.DELIBERATE,
        "13",
        asks("sub.conf.test.", "www.sub.conf.test."),
        _fields("ttl.countdown"),
        "nsd's referral (NS sub.conf.test and its glue) cached: TTLs count down on round 2",
        "the same referral, passed on again from nsd: TTLs at 3600 both rounds",
        "an answer without records and without an SOA is never cached (RFC 2308 5: no "
        "negative caching without the SOA); the referral is asked for again each time",
    ),
    # -- deliberate: issue 17 ---------------------------------------------------------------
    Known(
        "rd0-ede",
        Status.DELIBERATE,
        "17",
        tagged("rd0"),
        _fields("edns.options"),
        "REFUSED (access-control allow, not allow_snoop), no EDE",
        "REFUSED with EDE 18 Prohibited",
        "RD=0 is cache snooping; REFUSED as unbound, and the EDE says why (RFC 8914)",
    ),
    Known(
        "axfr-refused-ra",
        Status.DELIBERATE,
        "13",
        tagged("axfr"),
        _fields("flag.ra"),
        "REFUSED with RA=0",
        "REFUSED with RA=1 (and EDE 21 Not Supported when the query has EDNS)",
        "recursion is available to this client, only the transfer is refused; unbound sets "
        "RA on its RD=0 REFUSED (rd0 above) too",
        lambda d: (d.unbound, d.dnsfilter) == ("0", "1"),
    ),
    Known(
        "tsig-notauth",
        Status.DELIBERATE,
        "17",
        tagged("tsig"),
        _fields("rcode flag.ra answer authority additional tsig edns ttl.countdown"),
        "FORMERR, RA=0: the whole query echoed, the client's TSIG record (error 0, its MAC) "
        "included",
        "NOTAUTH with an unsigned TSIG record, error BADKEY, no OPT",
        "RFC 8945 5.2 for a key the server does not know; never an unsigned answer as if the "
        "signature had been checked",
    ),
    # -- unbound is the odd one -------------------------------------------------------------
    Known(
        "two-opt-records",
        Status.REFERENCE,
        "13",
        tagged("two-opt"),
        _fields("reply"),
        "FORMERR echoing the whole query back, both OPT records included (dnspython cannot "
        "parse it)",
        "FORMERR, header only",
        "RFC 6891 6.1.1: more than one OPT is FORMERR; dnsfilter's reply is well-formed",
        lambda d: d.unbound.startswith("unparsable") and d.dnsfilter == "reply",
    ),
)
