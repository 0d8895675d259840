"""Literal DNS messages for the unit tests, and tiny builders for the malformed ones.

The constants are wire bytes written out by hand (dnspython and dnslib test style), one field
per group of hex digits, so a reader can check every offset the tests assert on. Each one is
also decoded by dnspython in ``tests/unit/test_wire.py``, which keeps the hex honest.

The builders put together headers, questions and records field by field; they do no checking
at all, which is the point: they make the broken messages that parse_query must reject.
"""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!HHHHHH")

#: Header flags used by the builders and the tests.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
CD = 0x0010
DO = 0x8000

#: The name www.example.com on the wire, and in mixed case.
WWW_EXAMPLE_COM = b"\x03www\x07example\x03com\x00"
WWW_EXAMPLE_COM_MIXED = b"\x03WwW\x07ExAmPlE\x03COM\x00"

#: id 0x1234, RD; www.Example.COM IN A; no EDNS.
QUERY_A = bytes.fromhex(
    "1234 0100 0001 0000 0000 0000"  # id, flags RD, QD 1, AN 0, NS 0, AR 0
    "03 777777 07 4578616d706c65 03 434f4d 00"  # www.Example.COM
    "0001 0001"  # A IN
)
QUERY_A_QUESTION_END = 12 + 17 + 4

#: id 0xbeef, RD and CD; example.org IN AAAA; OPT: payload 4096, version 0, DO.
QUERY_AAAA_EDNS_DO = bytes.fromhex(
    "beef 0110 0001 0000 0000 0001"  # id, flags RD|CD, QD 1, AR 1
    "07 6578616d706c65 03 6f7267 00"  # example.org
    "001c 0001"  # AAAA IN
    "00 0029 1000 00 00 8000 0000"  # OPT: root, payload 4096, ext rcode 0, version 0, DO, no rdata
)

#: id 0x0001, no flags; the root, IN NS; no EDNS.
QUERY_ROOT_NS = bytes.fromhex(
    "0001 0000 0001 0000 0000 0000"  # id, no flags, QD 1
    "00"  # the root
    "0002 0001"  # NS IN
)

#: id 0x1234, RD; www.example.com IN A; OPT with EDNS version 1 (payload 1232, no DO).
QUERY_EDNS_VERSION_1 = bytes.fromhex(
    "1234 0100 0001 0000 0000 0001"
    "03 777777 07 6578616d706c65 03 636f6d 00"
    "0001 0001"
    "00 0029 04d0 00 01 0000 0000"  # OPT: version 1
)

#: A compressed answer to www.example.com A: a CNAME to cdn.example.com and its A record,
#: then an OPT (payload 1232, DO). Offsets: question ends at 33; the CNAME's TTL sits at 39;
#: its rdata (cdn + pointer to example.com at 16) starts at 45; the A record owner is a
#: pointer to 45, its TTL at 57; the OPT starts at 67.
RESPONSE_CNAME_CHAIN = bytes.fromhex(
    "1234 8180 0001 0002 0000 0001"  # id, QR RD RA, QD 1, AN 2, NS 0, AR 1
    "03 777777 07 6578616d706c65 03 636f6d 00 0001 0001"  # www.example.com A IN
    "c00c 0005 0001 0000012c 0006 03 63646e c010"  # www.example.com CNAME cdn.example.com 300
    "c02d 0001 0001 0000003c 0004 c0000201"  # cdn.example.com A 192.0.2.1 60
    "00 0029 04d0 00 00 8000 0000"  # OPT
)
RESPONSE_CNAME_CHAIN_QUESTION_END = 33


def header(
    msg_id: int = 0x1234,
    flags: int = RD,
    qdcount: int = 1,
    ancount: int = 0,
    nscount: int = 0,
    arcount: int = 0,
) -> bytes:
    """A 12-octet header with the given fields, unchecked."""
    return _HEADER.pack(msg_id, flags, qdcount, ancount, nscount, arcount)


def question(name: bytes = WWW_EXAMPLE_COM, qtype: int = 1, qclass: int = 1) -> bytes:
    """A question entry: name (already on the wire) then type and class."""
    return name + struct.pack("!HH", qtype, qclass)


def rr(name: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    """A resource record with the given owner (on the wire) and rdata; rdlength is computed."""
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def opt_rr(
    payload: int = 1232,
    ext_rcode: int = 0,
    version: int = 0,
    flags: int = 0,
    options: bytes = b"",
    owner: bytes = b"\x00",
) -> bytes:
    """An OPT pseudo-record (RFC 6891): the class is the payload size, the TTL the EDNS bits."""
    ttl = (ext_rcode << 24) | (version << 16) | flags
    return rr(owner, 41, ttl, options, rclass=payload)


def query(
    name: bytes = WWW_EXAMPLE_COM,
    qtype: int = 1,
    *,
    msg_id: int = 0x1234,
    flags: int = RD,
    opt: bytes | None = None,
) -> bytes:
    """A well-formed query, with the OPT record given (if any) as its only additional."""
    tail = b"" if opt is None else opt
    return header(msg_id, flags, 1, 0, 0, 0 if opt is None else 1) + question(name, qtype) + tail
