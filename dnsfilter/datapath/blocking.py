"""How a blocked query is answered: the blocking modes and their replies on bytes."""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import NamedTuple

from dnsfilter.datapath.wire import (
    HEADER_LEN,
    EdeCode,
    QType,
    Query,
    Rcode,
    answer_record,
    ede_option,
    negative_soa,
    opt_record,
    reply_flags,
)


class BlockMode(enum.Enum):
    NULL = "null"  #: 0.0.0.0 / :: for A / AAAA, NODATA for other types
    NXDOMAIN = "nxdomain"  #: the name does not exist
    NODATA = "nodata"  #: the name exists but has no records of any type
    REFUSED = "refused"  #: the resolver refuses to answer
    SINKHOLE = "sinkhole"  #: configured addresses for A / AAAA, NODATA for other types


class _Made(NamedTuple):
    """A blocked reply but for the header's ID and flags and the echoed question."""

    rcode: int
    counts: bytes  #: QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
    tail: bytes  #: the answer or authority record, and the OPT with the EDE


class BlockAnswers:
    """Precomputed replies for one policy's mode, TTL and sinkhole addresses.

    Each reply shape (list, mode, A / AAAA / other type, EDNS, DO) is built once, the first
    time it is needed; a blocked query then costs a header, its question and that tail.
    The shapes are bounded by the configured lists and modes.
    """

    __slots__ = ("_a", "_aaaa", "_made", "_soa", "mode", "ttl")

    def __init__(
        self,
        mode: BlockMode,
        ttl: int,
        sinkhole_ipv4: ipaddress.IPv4Address | None = None,
        sinkhole_ipv6: ipaddress.IPv6Address | None = None,
    ) -> None:
        self.mode = mode
        self.ttl = ttl
        if mode is BlockMode.SINKHOLE:
            ipv4 = sinkhole_ipv4.packed if sinkhole_ipv4 else None
            ipv6 = sinkhole_ipv6.packed if sinkhole_ipv6 else None
        else:
            ipv4, ipv6 = bytes(4), bytes(16)
        self._a = answer_record(QType.A, ttl, ipv4) if ipv4 else None
        self._aaaa = answer_record(QType.AAAA, ttl, ipv6) if ipv6 else None
        self._soa = negative_soa(ttl)
        self._made: dict[tuple[str, BlockMode | None, int, bool, bool], _Made] = {}

    def reply(self, q: Query, list_name: str, mode: BlockMode | None = None) -> bytes:
        """The blocked reply; mode overrides the policy's own (a list entry may demand one)."""
        qtype = q.qtype
        shape = (list_name, mode, qtype if qtype in (_A, _AAAA) else 0, q.edns, q.do)
        made = self._made.get(shape) or self.shape(qtype, list_name, mode, q.edns, q.do)
        return (
            _ID_FLAGS.pack(q.id, reply_flags(q.flags, made.rcode))
            + made.counts
            + q.wire[HEADER_LEN : q.question_end]
            + made.tail
        )

    def shape(
        self, qtype: int, list_name: str, mode: BlockMode | None, edns: bool, do: bool
    ) -> _Made:
        """The reply shape reply() uses for such a query: the compiled datapath (_fastpath)
        puts the header and question before it itself."""
        shape = (list_name, mode, qtype if qtype in (_A, _AAAA) else 0, edns, do)
        made = self._made.get(shape)
        if made is None:
            made = self._made[shape] = self._make(qtype, list_name, mode, edns, do)
        return made

    def _make(
        self, qtype: int, list_name: str, mode: BlockMode | None, edns: bool, do: bool
    ) -> _Made:
        if mode is None or mode is self.mode:
            mode = self.mode
            a, aaaa = self._a, self._aaaa
        else:
            a, aaaa = (
                (_NULL_A[self.ttl], _NULL_AAAA[self.ttl])
                if mode is BlockMode.NULL
                else (None, None)
            )
        rcode = Rcode.NOERROR
        answer = authority = b""
        if mode is BlockMode.NXDOMAIN:
            rcode, authority = Rcode.NXDOMAIN, self._soa
        elif mode is BlockMode.REFUSED:
            rcode = Rcode.REFUSED
        elif mode is not BlockMode.NODATA and qtype == QType.A and a is not None:
            answer = a
        elif mode is not BlockMode.NODATA and qtype == QType.AAAA and aaaa is not None:
            answer = aaaa
        else:
            authority = self._soa
        opt = opt_record(do, rcode >> 4, ede_option(EdeCode.BLOCKED, list_name)) if edns else b""
        counts = _COUNTS.pack(1, 1 if answer else 0, 1 if authority else 0, 1 if opt else 0)
        return _Made(rcode, counts, answer + authority + opt)


_A = int(QType.A)
_AAAA = int(QType.AAAA)
_ID_FLAGS = struct.Struct("!HH")
_COUNTS = struct.Struct("!HHHH")


class _NullRecords(dict[int, bytes]):
    """Null answers per TTL, built on first use, for entries that override the mode."""

    def __init__(self, rtype: QType, size: int) -> None:
        super().__init__()
        self._rtype = rtype
        self._size = size

    def __missing__(self, ttl: int) -> bytes:
        record = self[ttl] = answer_record(self._rtype, ttl, bytes(self._size))
        return record


_NULL_A = _NullRecords(QType.A, 4)
_NULL_AAAA = _NullRecords(QType.AAAA, 16)
