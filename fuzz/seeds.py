"""Seed corpora, and the seeded mutator the CI smoke test runs the targets with.

Wire seeds are the hand-written vectors of tests/vectors, the hostile kinds of
tests/dnsfuzz.py (from a fixed seed) and answers dnspython builds, shaped like what nsd and
recursive upstreams send (CNAME chains, negative answers with an SOA, glue, OPT). List seeds
are the shipped YAML lists and the excerpts in fuzz/seeds/: real lines from StevenBlack/hosts
and AdGuard's DNS filter exceptions, plus every construct the parsers know (comments,
wildcards, IDN, modifiers, RPZ directives and parentheses).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from tests import dnsfuzz, vectors

REPO = Path(__file__).resolve().parents[1]
_EXCERPTS = Path(__file__).resolve().parent / "seeds"


def query_seeds() -> list[bytes]:
    seeds = [
        vectors.QUERY_A,
        vectors.QUERY_AAAA_EDNS_DO,
        vectors.QUERY_ROOT_NS,
        vectors.QUERY_EDNS_VERSION_1,
        dnsfuzz.query("banned.example.test"),
        dnsfuzz.query("x.banned.example.test", 28, edns=True),
        dnsfuzz.query("www.example.test"),
        dnsfuzz.query("www.example.test", 255),
        dnsfuzz.query("www.example.com", 16, 3),
    ]
    rng = random.Random(16)
    for make in dnsfuzz.KINDS.values():
        seeds.extend(make(rng) for _ in range(3))
    return seeds


def _rrset(text: str) -> dns.rrset.RRset:
    name, ttl, rtype, rdata = text.split(None, 3)
    return dns.rrset.from_text(name, int(ttl), "IN", rtype, rdata)


def _reply(
    qname: str,
    qtype: str,
    answer: tuple[str, ...] = (),
    authority: tuple[str, ...] = (),
    additional: tuple[str, ...] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    edns: bool = True,
    flags: int = 0,
) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else None, want_dnssec=edns)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    reply.flags |= dns.flags.RA | flags
    for section, texts in (
        (reply.answer, answer),
        (reply.authority, authority),
        (reply.additional, additional),
    ):
        section.extend(_rrset(text) for text in texts)
    return bytes(reply.to_wire())


_SOA = "example.test. 300 SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"


def response_seeds() -> list[bytes]:
    seeds = [
        vectors.RESPONSE_CNAME_CHAIN,
        _reply("www.example.test", "A", ("www.example.test. 300 A 192.0.2.10",)),
        _reply(
            "www.example.test",
            "A",
            (
                "www.example.test. 300 CNAME cdn.banned.example.test.",
                "cdn.banned.example.test. 60 A 192.0.2.99",
            ),
        ),
        _reply("v6.example.test", "AAAA", ("v6.example.test. 300 AAAA 2001:db8::1",), edns=False),
        _reply("none.example.test", "A", authority=(_SOA,), rcode=dns.rcode.NXDOMAIN),
        _reply("empty.example.test", "TXT", authority=(_SOA,)),
        _reply("lame.example.test", "A", rcode=dns.rcode.NXDOMAIN),
        _reply("fail.example.test", "A", rcode=dns.rcode.SERVFAIL),
        _reply("big.example.test", "TXT", flags=dns.flags.TC),
        _reply(
            "example.test",
            "MX",
            ("example.test. 3600 MX 10 mail.example.test.",),
            ("example.test. 3600 NS ns.example.test.",),
            ("mail.example.test. 3600 A 192.0.2.25", "ns.example.test. 3600 AAAA 2001:db8::53"),
        ),
        _reply("d.example.test", "A", ("example.test. 300 DNAME other.test.",)),
        _reply("www.example.test", "A", ("www.example.test. 0 A 192.0.2.10",)),
    ]
    # The OPT in the middle of the additional section, records after it: the shape the
    # cache cannot take as one slice. The second A's owner points at the first one's.
    question = dnsfuzz.name("www.example.test") + b"\x00\x01\x00\x01"
    glue = b"\x03ns1\xc0\x10" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, 1))
    seeds.append(
        struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 3)
        + question
        + b"\xc0\x0c"
        + struct.pack("!HHIH", 1, 1, 300, 4)
        + bytes((192, 0, 2, 10))
        + dnsfuzz.opt()
        + glue
        + b"\xc0"
        + bytes((12 + len(question) + 16 + 11,))
        + struct.pack("!HHIH", 1, 1, 60, 4)
        + bytes((192, 0, 2, 2))
    )
    return seeds


def _excerpt(name: str) -> bytes:
    return (_EXCERPTS / name).read_bytes()


def list_seeds(format: str) -> list[bytes]:
    excerpts = {
        "hosts": ["hosts.txt", "plain.txt"],
        "plain": ["plain.txt", "hosts.txt"],
        "adblock": ["adblock.txt", "plain.txt"],
        "rpz": ["rpz.txt"],
        "yaml": ["list.yaml"],
    }[format]
    seeds = [_excerpt(name) for name in excerpts]
    if format == "yaml":
        # Each shipped list up to its fourth entry: the whole of one (up to 28 KB) slows the
        # fuzzer to a few runs a second and adds nothing the first entries do not show.
        for path in sorted((REPO / "blocklists").glob("*.yaml")):
            text = path.read_bytes()
            cut = -1
            for _ in range(4):
                cut = text.find(b"\n  - domain:", cut + 1)
            seeds.append(text if cut < 0 else text[: cut + 1])
    return seeds


def config_seeds() -> list[bytes]:
    configs = [
        REPO / "dnsfilter" / "config" / "default_config.yaml",
        REPO / "deploy" / "systemd" / "dnsfilter.yaml",
        REPO / "deploy" / "container" / "dnsfilter.yaml",
    ]
    seeds = [path.read_bytes() for path in configs if path.is_file()]
    seeds.append(
        b"upstream: {servers: ['127.0.0.1:5300']}\n"
        b"networks: {lan: ['192.0.2.0/24']}\n"
        b"lists: {apps: {file: apps.txt}}\n"
        b"policies: {p: {networks: [lan], lists: [apps], mode: nxdomain}}\n"
    )
    return seeds


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "query": query_seeds,
    "response": response_seeds,
    **{f: (lambda f=f: list_seeds(f)) for f in ("hosts", "plain", "adblock", "rpz", "yaml")},  # type: ignore[misc]
    "config": config_seeds,
}


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """One to eight of libFuzzer's simpler moves: flip, set, insert, delete, duplicate a
    run, splice in part of another seed, or cut. No coverage feedback: this only keeps the
    targets exercised in CI."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out and at < len(out):
            out[at] ^= 1 << rng.randrange(8)
        elif op == 1 and at < len(out):
            out[at] = rng.choice(
                (0, 0xFF, 0xC0, 0x3F, 0x40, 0x0A, 0x2E, 0x22, 0x28, rng.randrange(256))
            )
        elif op == 2:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3:
            del out[at : at + rng.randint(1, 8)]
        elif op == 4:
            out[at:at] = out[at : at + rng.randint(1, 32)] * rng.randint(1, 4)
        elif op == 5 and others:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            out[at:at] = other[start : start + rng.randint(1, 64)]
        else:
            del out[at:]
    return bytes(out)
