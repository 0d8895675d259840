"""Fuzz targets for the wire parsers: whatever the bytes, only WireError (FormatError for the
name and response walkers) may escape, and what does parse stays inside the message.

Each target runs DNSFILTER_FUZZ_EXAMPLES examples (400 by default, a few seconds in all, the
same ones every run; with the variable set, fresh random ones).
Two kinds of input: messages hypothesis assembles from DNS-shaped parts (labels, pointers,
type/class pairs, record headers with honest or lying lengths, OPT records), and the hostile
kinds of tests/dnsfuzz.py (the live fuzz test's packets) driven by hypothesis' random.
"""

from __future__ import annotations

import os
import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfilter.datapath.wire import (
    HEADER_LEN,
    Transport,
    parse_query,
    read_name,
    scan_response,
    skip_name,
)
from dnsfilter.errors import FormatError, WireError
from tests import dnsfuzz

CLIENT = ("192.0.2.1", 5353)
#: Examples per target; DNSFILTER_FUZZ_EXAMPLES=20000 for a longer hunt than CI's.
EXAMPLES = int(os.environ.get("DNSFILTER_FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    # The same examples on every CI run; a longer hunt (the variable set) explores anew.
    derandomize="DNSFILTER_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_RR_FIXED = struct.Struct("!HHIH")

#: One piece of a DNS-shaped message.
label = st.integers(0, 70).flatmap(
    lambda n: st.binary(min_size=n, max_size=n).map(lambda b: bytes((len(b),)) + b)
)
pointer = st.integers(0, 0x3FFF).map(lambda at: struct.pack("!H", 0xC000 | at))
small_pointer = st.integers(0, 64).map(lambda at: struct.pack("!H", 0xC000 | at))
reserved_label = st.integers(0x40, 0xBF).map(lambda b: bytes((b,)))
type_class = st.tuples(
    st.sampled_from([1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 64, 65, 255, 0, 65535]),
    st.sampled_from([1, 3, 255, 512, 1232, 4096, 0]),
).map(lambda tc: struct.pack("!HH", *tc))
rr_fixed = st.tuples(
    st.sampled_from([1, 5, 6, 28, 41, 39, 65]),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 70) | st.just(0xFFFF),
).map(lambda f: _RR_FIXED.pack(*f))
part = st.one_of(
    label,
    pointer,
    small_pointer,
    reserved_label,
    st.just(b"\x00"),
    type_class,
    rr_fixed,
    st.binary(max_size=12),
)
body = st.lists(part, max_size=24).map(b"".join)
count = st.sampled_from([0, 1, 2, 3, 0xFFFF]) | st.integers(0, 0xFFFF)


@st.composite
def messages(draw: st.DrawFn, response: bool = False) -> bytes:
    """A header with plausible-to-absurd counts, then DNS-shaped parts, maybe cut short."""
    flags = draw(st.integers(0, 0xFFFF))
    flags = (flags | 0x8000) if response else (flags & ~0x7800 & ~0x8000)
    counts = (draw(st.sampled_from([1, 1, 1, 0, 2])), draw(count), draw(count), draw(count))
    data = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, *counts) + draw(body)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _check_query(data: bytes, transport: Transport) -> None:
    try:
        q = parse_query(data, CLIENT, transport)
    except WireError:
        return
    assert HEADER_LEN < q.question_end <= len(data)
    raw = q.qname.encode("latin-1")  # DNS case folding is ASCII only (RFC 4343)
    assert raw == raw.lower() and not q.qname.endswith(".")
    assert len(q.qname) <= 253
    assert 512 <= q.max_size <= 65535


@FUZZ
@given(messages(), st.sampled_from(Transport))
def test_parse_query_dns_shaped(data: bytes, transport: Transport) -> None:
    _check_query(data, transport)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_parse_query_hostile_kinds(rng: random.Random) -> None:
    for make in dnsfuzz.KINDS.values():
        _check_query(make(rng), Transport.UDP)


@FUZZ
@given(messages(response=True))
def test_scan_response_dns_shaped(data: bytes) -> None:
    try:
        scan = scan_response(data)
    except FormatError:
        return
    assert scan.question_end <= len(data)
    for ref in scan.records:
        assert ref.start < ref.rdata_start <= ref.end <= len(data)
        assert struct.unpack_from("!I", data, ref.ttl_offset)[0] == ref.ttl
        # Every owner name the scan walked past can be read, pointers and all.
        _read(data, ref.start)


def _read(data: bytes, pos: int) -> None:
    try:
        name = read_name(data, pos)
    except FormatError:
        return
    assert len(name) <= 254
    raw = name.encode("latin-1")
    assert raw == raw.lower()


@FUZZ
@given(messages(), st.integers(0, 300))
def test_read_and_skip_name_anywhere(data: bytes, pos: int) -> None:
    _read(data, pos)
    try:
        end = skip_name(data, pos)
    except FormatError:
        return
    assert pos < end <= len(data)


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(12, 200), st.integers(1, 20))
def test_pointer_chains_and_loops_end(start: int, hops: int) -> None:
    """A chain of pointers, each to the next, ending in a loop back to the first."""
    data = bytearray(dnsfuzz.header() + bytes(start - 12))
    first = len(data)
    for n in range(hops):
        target = first + 2 * (n + 1) if n + 1 < hops else first
        data += struct.pack("!H", 0xC000 | target)
    try:
        read_name(bytes(data), first)
    except FormatError as exc:
        assert "loop" in str(exc) or "past the end" in str(exc)
    else:
        raise AssertionError("a pointer loop was read as a name")
