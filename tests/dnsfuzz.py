"""Hostile DNS messages, crafted by hand from a seeded random.Random.

Shared by the fuzz unit tests (driven by hypothesis' ``st.randoms``) and the live fuzz test
(tests/integration/test_fuzz_live.py), which fires a hundred thousand of them at a running
server. Each kind is one function ``(rng) -> bytes``; ``KINDS`` maps their names to them and
``packet(rng)`` picks one. Nothing here checks anything: the point is to be wrong in every way
a parser can trip on.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")

QR = 0x8000
RD = 0x0100
CD = 0x0010
DO = 0x8000
OPT = 41

#: Valid queries the mutators start from (wire bytes).
_NAMES = (
    "www.example.test",
    "a.b.c.d.e.f.g.example.test",
    "x" * 63 + ".example.test",
    "banned.example.test",
    "",
    "xn--bcher-kva.example.test",
)
_QTYPES = (1, 28, 5, 15, 16, 33, 65, 255, 252, 251, 0, 41, 65535)
_QCLASSES = (1, 1, 1, 1, 3, 254, 255, 0)


def name(text: str) -> bytes:
    out = b"".join(bytes((len(label),)) + label.encode() for label in text.split(".") if label)
    return out + b"\x00"


def header(
    msg_id: int = 0x1234,
    flags: int = RD,
    qdcount: int = 1,
    ancount: int = 0,
    nscount: int = 0,
    arcount: int = 0,
) -> bytes:
    return _HEADER.pack(msg_id, flags, qdcount, ancount, nscount, arcount)


def opt(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (DO if do else 0)
    return b"\x00" + _RR_FIXED.pack(OPT, payload, ttl, len(options)) + options


def query(
    qname: str = "www.example.test",
    qtype: int = 1,
    qclass: int = 1,
    edns: bool = False,
    msg_id: int = 0x1234,
) -> bytes:
    tail = opt(do=True, options=_option(10, 8)) if edns else b""
    return (
        header(msg_id, RD, 1, 0, 0, 1 if edns else 0)
        + name(qname)
        + struct.pack("!HH", qtype, qclass)
        + tail
    )


def _option(code: int, length: int) -> bytes:
    return struct.pack("!HH", code, length) + bytes(length)


def _rand_bytes(rng: random.Random, size: int) -> bytes:
    return rng.getrandbits(size * 8).to_bytes(size, "big") if size else b""


def _seed(rng: random.Random) -> bytes:
    return query(
        rng.choice(_NAMES),
        rng.choice(_QTYPES),
        rng.choice(_QCLASSES),
        edns=rng.random() < 0.5,
        msg_id=rng.getrandbits(16),
    )


# ---------------------------------------------------------------------------------------
# The kinds


def random_bytes(rng: random.Random) -> bytes:
    """Noise, mostly short; now and then bigger than any sane query."""
    size = rng.choice((rng.randrange(0, 13), rng.randrange(12, 600), rng.randrange(600, 4000)))
    return _rand_bytes(rng, size)


def mutated(rng: random.Random) -> bytes:
    """A valid query with one to four bytes flipped, set, deleted, inserted or cut."""
    data = bytearray(_seed(rng))
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        at = rng.randrange(len(data))
        op = rng.randrange(6)
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at] = rng.randrange(256)
        elif op == 2:
            del data[at]
        elif op == 3:
            data.insert(at, rng.randrange(256))
        elif op == 4:
            del data[at:]
        else:
            data[at:at] = data[at : at + rng.randrange(1, 16)]
    return bytes(data)


def bad_pointer(rng: random.Random) -> bytes:
    """Compression pointers where a query has none: forward, self, past the end, loops."""
    target = rng.choice((12, 13, 14, 0, 0x3FFF, rng.randrange(0x4000)))
    pointer = struct.pack("!H", 0xC000 | target)
    loop = b"\xc0\x0e\xc0\x0c"  # 12 -> 14 -> 12
    where = rng.randrange(4)
    if where == 0:  # in the question itself
        qname = rng.choice((pointer, b"\x03www" + pointer, loop, b"\xc0\x0c"))
        return header() + qname + b"\x00\x01\x00\x01"
    question = name("www.example.test") + b"\x00\x01\x00\x01"
    owner = rng.choice((pointer, b"\xc0\x0c", loop, b"\x01a" + pointer))
    record = owner + _RR_FIXED.pack(rng.choice((1, 5, OPT)), 1, 60, 4) + bytes(4)
    counts = ((1, 0, 0), (0, 1, 0), (0, 0, 1))[where - 1]
    return header(0x4242, RD, 1, *counts) + question + record


def huge_counts(rng: random.Random) -> bytes:
    """A fine question, then section counts promising far more than the packet holds."""
    counts = [rng.choice((0, 1, 2, 0xFFFF, rng.randrange(0x10000))) for _ in range(4)]
    tail = rng.choice((b"", opt(), _rand_bytes(rng, rng.randrange(40))))
    return (
        header(rng.getrandbits(16), RD, *counts) + name("www.example.test") + b"\x00\x01\x00\x01"
    ) + tail


def truncated_opt(rng: random.Random) -> bytes:
    """An OPT record cut short, or whose rdlength or option lengths lie."""
    options = rng.choice((b"", _option(10, 8), _option(15, 6), struct.pack("!HH", 10, 40) + b"x"))
    record = opt(rng.choice((0, 511, 512, 1232, 65535)), do=rng.random() < 0.5, options=options)
    if rng.random() < 0.5:
        record = record[: rng.randrange(len(record))]
    else:
        lying = struct.pack("!H", rng.choice((0, 1, len(options) + 1, 0xFFFF)))
        record = record[:9] + lying + record[11:]
    return header(0x0101, RD, 1, 0, 0, 1) + name("edns.example.test") + b"\x00\x01\x00\x01" + record


def odd_opt(rng: random.Random) -> bytes:
    """OPT records in the wrong place, twice, with a non-root owner or another version."""
    question = name("edns.example.test") + b"\x00\x1c\x00\x01"
    variant = rng.randrange(4)
    if variant == 0:
        return header(0x0202, RD, 1, 0, 0, 2) + question + opt() + opt()
    if variant == 1:
        return header(0x0202, RD, 1, 1, 0, 0) + question + opt()
    if variant == 2:
        owner = b"\x01x\x00" + _RR_FIXED.pack(OPT, 1232, 0, 0)
        return header(0x0202, RD, 1, 0, 0, 1) + question + owner
    version = rng.randrange(1, 256)
    return header(0x0202, RD, 1, 0, 0, 1) + question + opt(version=version)


def oversized_labels(rng: random.Random) -> bytes:
    """Label lengths over 63 (the reserved 0x40 and 0x80 types), names over 255 octets,
    labels running past the end."""
    variant = rng.randrange(4)
    if variant == 0:
        qname = bytes((rng.randrange(64, 192),)) + b"a" * 70 + b"\x00"
    elif variant == 1:
        qname = (b"\x3f" + b"a" * 63) * 4 + b"\x05aaaaa\x00"  # 262 octets
    elif variant == 2:
        qname = b"\x3f" + b"a" * rng.randrange(0, 63)  # runs out
        return header() + qname
    else:
        qname = b"\x01a" * rng.randrange(100, 140) + b"\x00"
    return header() + qname + b"\x00\x01\x00\x01"


def odd_header(rng: random.Random) -> bytes:
    """Responses, other opcodes, every flag, QDCOUNT 0 or 2, and unusual types and classes."""
    flags = rng.getrandbits(16)
    qdcount = rng.choice((0, 1, 1, 2))
    question = name(rng.choice(_NAMES)) + struct.pack(
        "!HH", rng.choice(_QTYPES), rng.choice(_QCLASSES)
    )
    return header(rng.getrandbits(16), flags, qdcount) + question * max(qdcount, 1)


def valid(rng: random.Random) -> bytes:
    """A good query for a fresh name (forwarded), or for ANY (answered at once)."""
    label = f"f{rng.getrandbits(40):x}"
    qtype = rng.choice((1, 28, 255, 16))
    return query(
        f"{label}.example.test", qtype, edns=rng.random() < 0.3, msg_id=rng.getrandbits(16)
    )


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "random_bytes": random_bytes,
    "mutated": mutated,
    "bad_pointer": bad_pointer,
    "huge_counts": huge_counts,
    "truncated_opt": truncated_opt,
    "odd_opt": odd_opt,
    "oversized_labels": oversized_labels,
    "odd_header": odd_header,
    "valid": valid,
}
#: How often each kind is picked: mostly the ones a parser can trip on.
_WEIGHTS = (3, 6, 3, 2, 3, 2, 2, 2, 1)
_NAMES_LIST = list(KINDS)


def packet(rng: random.Random) -> tuple[str, bytes]:
    """One hostile message and the name of its kind."""
    kind = rng.choices(_NAMES_LIST, _WEIGHTS)[0]
    return kind, KINDS[kind](rng)
