"""How a blocked query is answered: the blocking modes and their replies on bytes."""

from __future__ import annotations

import enum
import ipaddress

from dnsfilter.wire import (
    EdeCode,
    QType,
    Query,
    Rcode,
    answer_record,
    build_reply,
    ede_option,
    negative_soa,
)


class BlockMode(enum.Enum):
    NULL = "null"  #: 0.0.0.0 / :: for A / AAAA, NODATA for other types
    NXDOMAIN = "nxdomain"  #: the name does not exist
    NODATA = "nodata"  #: the name exists but has no records of any type
    REFUSED = "refused"  #: the resolver refuses to answer
    SINKHOLE = "sinkhole"  #: configured addresses for A / AAAA, NODATA for other types


class BlockAnswers:
    """Precomputed record tails for one policy's mode, TTL and sinkhole addresses."""

    __slots__ = ("_a", "_aaaa", "_ede", "_soa", "mode", "ttl")

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
        self._ede: dict[str, bytes] = {}

    def reply(self, q: Query, list_name: str, mode: BlockMode | None = None) -> bytes:
        """The blocked reply; mode overrides the policy's own (a list entry may demand one)."""
        ede = self._ede.get(list_name)
        if ede is None:
            ede = self._ede[list_name] = ede_option(EdeCode.BLOCKED, list_name)
        if mode is None or mode is self.mode:
            mode = self.mode
            a, aaaa = self._a, self._aaaa
        else:
            a, aaaa = (
                (_NULL_A[self.ttl], _NULL_AAAA[self.ttl])
                if mode is BlockMode.NULL
                else (None, None)
            )
        if mode is BlockMode.NXDOMAIN:
            return build_reply(q, Rcode.NXDOMAIN, authority=self._soa, nscount=1, ede=ede)
        if mode is BlockMode.REFUSED:
            return build_reply(q, Rcode.REFUSED, ede=ede)
        if mode is not BlockMode.NODATA:
            if q.qtype == QType.A and a is not None:
                return build_reply(q, Rcode.NOERROR, answer=a, ancount=1, ede=ede)
            if q.qtype == QType.AAAA and aaaa is not None:
                return build_reply(q, Rcode.NOERROR, answer=aaaa, ancount=1, ede=ede)
        return build_reply(q, Rcode.NOERROR, authority=self._soa, nscount=1, ede=ede)


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
