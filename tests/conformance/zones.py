"""The zones nsd serves to both resolvers, and the questions the suite asks about them.

Each record is there for one case, named in its comment; QUESTIONS asks about every one.
Every TTL (and negative TTL) is 300 s or more, but for the TTL 0 case: a question's repeat
comes one round (some 20 s, more on a loaded machine) after its first ask, and nothing may
expire or be prefetched (at 90% of its life) in between, or the TTL would go back up.
"""

from __future__ import annotations

from typing import NamedTuple

#: SOA MINIMUM values: conf.test's negative TTL is its MINIMUM (900, below the records'
#: 3600, so a negative answer's CNAME shows the clamp); other.test's SOA TTL (900) is below
#: its MINIMUM (7200), so RFC 2308 makes 900 the negative TTL; long.test's is 7200, above
#: both resolvers' cap on negative TTLs (3600).
CONF_MINIMUM = 900
OTHER_SOA_TTL = 900
LONG_MINIMUM = 7200

#: The TXT record sizes: bigtxt's answer is above 1232 bytes, hugetxt's above 4096.
BIG_TXT_STRINGS = 30
HUGE_TXT_STRINGS = 80
MANY_A = 60

_STRING = "x" * 60


def _txt(owner: str, count: int) -> str:
    return "\n".join(f'{owner} TXT "{i:03d}-{_STRING}"' for i in range(count))


CONF_ZONE = f"""\
$ORIGIN conf.test.
$TTL 3600
@        IN SOA  ns1.conf.test. hostmaster.conf.test. 2024010101 3600 900 604800 {CONF_MINIMUM}
@        IN NS   ns1
@        IN MX   10 mail
@        IN CAA  0 issue "ca.example.net"
ns1      IN A    192.0.2.1
mail     IN A    192.0.2.25
www      IN A    192.0.2.10
www      IN AAAA 2001:db8::10
; mixed case in the zone file: the owner is stored as written
MiXeD    IN A    192.0.2.11
txt      IN TXT  "v=conformance" "hello world"
; CNAME chains: within the zone, across zones, to nothing, out of every zone, a loop
alias    IN CNAME www
c1       IN CNAME c2
c2       IN CNAME c3
c3       IN CNAME www
cross    IN CNAME www.other.test.
crossback IN CNAME back.other.test.
dangling IN CNAME nothing.conf.test.
outside  IN CNAME host.unserved.example.
loop1    IN CNAME loop2
loop2    IN CNAME loop1
; wildcards: an address and a TXT, an exact name beside them, a wildcard CNAME
*.wild   IN A    192.0.2.99
*.wild   IN TXT  "wildcard"
exact.wild IN A  192.0.2.98
*.wcname IN CNAME www
; DNAME within the zone and to another zone
olddept  IN DNAME newdept.conf.test.
www.newdept IN A 192.0.2.50
outdname IN DNAME other.test.
; an empty non-terminal: ent and b.ent exist only as ancestors of a.b.ent
a.b.ent  IN A    192.0.2.60
; a delegation with glue (to a server that does not exist: nothing asks it)
sub      IN NS   ns.sub
ns.sub   IN A    192.0.2.53
; many addresses; TXT above 1232 and above 4096 bytes
{chr(10).join(f"many IN A 198.18.1.{i + 1}" for i in range(MANY_A))}
{_txt("bigtxt", BIG_TXT_STRINGS)}
{_txt("hugetxt", HUGE_TXT_STRINGS)}
; SRV, HTTPS and an unknown type (RFC 3597)
_sip._tcp IN SRV 10 60 5060 sip
sip      IN A    192.0.2.70
svc      IN HTTPS 1 . alpn="h2,h3" ipv4hint=192.0.2.80
unk      IN TYPE65400 \\# 4 0a000001
; escaped labels: a dot inside a label, a space inside a label
www\\.victim IN A 192.0.2.66
sp\\032ace IN A  192.0.2.67
; TTLs: a week (above both resolvers' 86400 cap), zero (never cached)
week 604800 IN A 192.0.2.7
zero 0   IN A    192.0.2.8
; a DNSSEC record, a fake (neither resolver validates): nsd serves it when asked for
; type RRSIG, and does not add it to DO answers, as the zone is not signed as a whole
signed   IN A    192.0.2.90
signed   IN RRSIG A 13 3 3600 20370101000000 20240101000000 12345 conf.test. (
    c2lnbmF0dXJlLW9mLW5vdGhpbmctYXQtYWxsLWl0LWlzLWEtdGVzdC1zaWduYXR1cmUtb2YtNjQtYnl0ZQ== )
"""

OTHER_ZONE = f"""\
$ORIGIN other.test.
$TTL 3600
@        {OTHER_SOA_TTL} IN SOA ns1.other.test. hostmaster.other.test. 1 3600 900 604800 7200
@        IN NS   ns1.conf.test.
www      IN A    192.0.2.200
back     IN CNAME www.conf.test.
"""

LONG_ZONE = f"""\
$ORIGIN long.test.
$TTL {LONG_MINIMUM}
@        IN SOA  ns1.long.test. hostmaster.long.test. 1 3600 900 604800 {LONG_MINIMUM}
@        IN NS   ns1.conf.test.
www      IN A    192.0.2.210
"""

#: Reached through an EDNS-intolerant relay (intolerant.py): FORMERR to any query with EDNS.
OLD_ZONE = """\
$ORIGIN old.test.
$TTL 3600
@        IN SOA  ns1.old.test. hostmaster.old.test. 1 3600 900 604800 900
@        IN NS   ns1.conf.test.
www      IN A    192.0.2.230
"""
#: The zone only the EDNS-intolerant relay forwards to.
OLD = "old.test"

ZONES = {
    "conf.test": CONF_ZONE,
    "other.test": OTHER_ZONE,
    "long.test": LONG_ZONE,
    OLD: OLD_ZONE,
}

#: A name that the dnsfilter policy blocks (mode null) and unbound answers from a local zone
#: of type always_null: both synthesize the blocked answer without asking nsd.
BLOCKED = "blocked.conf.test"
#: Blocked with mode nxdomain; unbound: always_nxdomain.
BLOCKED_NX = "gone.conf.test"


class Question(NamedTuple):
    qname: str  #: as sent, letter case included (dnspython text form, escapes allowed)
    qtype: str


def _q(qname: str, *qtypes: str) -> list[Question]:
    return [Question(qname, qtype) for qtype in qtypes]


QUESTIONS: tuple[Question, ...] = tuple(
    [
        *_q("conf.test.", "SOA", "NS", "MX", "CAA"),
        *_q("www.conf.test.", "A", "AAAA", "TXT", "MX"),
        *_q("WwW.CoNf.TeSt.", "A"),
        *_q("mixed.conf.test.", "A"),
        *_q("txt.conf.test.", "TXT"),
        *_q("alias.conf.test.", "A", "CNAME", "TXT"),
        *_q("c1.conf.test.", "A", "AAAA"),
        *_q("cross.conf.test.", "A"),
        *_q("crossback.conf.test.", "A"),
        *_q("dangling.conf.test.", "A"),
        *_q("outside.conf.test.", "A"),
        *_q("loop1.conf.test.", "A"),
        *_q("nope.conf.test.", "A", "TXT"),
        *_q("deep.below.nope.conf.test.", "A"),
        *_q("any.wild.conf.test.", "A", "TXT", "AAAA"),
        *_q("two.levels.wild.conf.test.", "A"),
        *_q("exact.wild.conf.test.", "A", "TXT"),
        *_q("below.exact.wild.conf.test.", "A"),
        *_q("x.wcname.conf.test.", "A"),
        *_q("www.olddept.conf.test.", "A"),
        *_q("nope.olddept.conf.test.", "A"),
        *_q("olddept.conf.test.", "DNAME"),
        *_q("www.outdname.conf.test.", "A"),
        *_q("ent.conf.test.", "A"),
        *_q("b.ent.conf.test.", "TXT"),
        *_q("a.b.ent.conf.test.", "A"),
        *_q("sub.conf.test.", "NS", "A", "DS"),
        *_q("www.sub.conf.test.", "A"),
        *_q("many.conf.test.", "A"),
        *_q("bigtxt.conf.test.", "TXT"),
        *_q("hugetxt.conf.test.", "TXT"),
        *_q("_sip._tcp.conf.test.", "SRV"),
        *_q("svc.conf.test.", "HTTPS"),
        *_q("unk.conf.test.", "TYPE65400", "A"),
        *_q(r"www\.victim.conf.test.", "A"),
        *_q("www.victim.conf.test.", "A"),
        *_q(r"sp\032ace.conf.test.", "A"),
        *_q("week.conf.test.", "A"),
        *_q("zero.conf.test.", "A"),
        *_q("signed.conf.test.", "A", "RRSIG"),
        *_q("www.other.test.", "A"),
        *_q("nope.other.test.", "A"),
        *_q("nope.long.test.", "A"),
        *_q("www.long.test.", "A"),
        *_q("unserved.example.", "A"),
        *_q(f"www.{OLD}.", "A"),
        *_q(f"nope.{OLD}.", "A"),
        *_q(f"{BLOCKED}.", "A", "AAAA", "TXT"),
        *_q(f"{BLOCKED_NX}.", "A"),
        *_q("www.conf.test.", "ANY"),
        *_q("nope.conf.test.", "ANY"),
        *_q("alias.conf.test.", "ANY"),
        *_q("ent.conf.test.", "ANY"),
    ]
)
