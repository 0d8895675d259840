"""DNS wire format on bytes: the query parser and reply builders of the hot path.

Only the header, the question and the OPT record of a query are parsed, by hand: a full
dnslib parse costs ten times more and the resolver needs nothing else to decide. Replies
are assembled from byte strings; names in answers point back at the question with the
compression pointer 0xC00C, so the client's question is echoed exactly as it was sent.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from dnsfilter.errors import (
    BadVersion,
    DropPacket,
    FormatError,
    NotImplementedOpcode,
    Unverifiable,
    WireError,
)

HEADER_LEN = 12
#: Largest UDP reply sent without EDNS (RFC 1035 4.2.1).
CLASSIC_UDP_SIZE = 512
#: The payload size we advertise and cap replies at: the DNS Flag Day 2020 value that
#: avoids IP fragmentation on common paths.
DEFAULT_UDP_SIZE = 1232
MAX_TCP_SIZE = 65535

_QR = 0x8000
_OPCODE_MASK = 0x7800
_AA = 0x0400
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080
_CD = 0x0010
_DO = 0x8000
#: Reply flags copied from the query: RD and CD (RFC 1035 4.1.1, RFC 4035 3.2.2).
_ECHOED_FLAGS = _RD | _CD

_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")


class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


class Rcode(enum.IntEnum):
    NOERROR = 0  #: no error
    FORMERR = 1  #: the query could not be parsed
    SERVFAIL = 2  #: the resolver failed
    NXDOMAIN = 3  #: the name does not exist
    NOTIMP = 4  #: the opcode is not implemented
    REFUSED = 5  #: policy refuses the query
    NOTAUTH = 9  #: a signature (TSIG) we cannot check (RFC 8945)
    BADVERS = 16  #: EDNS version not supported (extended rcode, RFC 6891)


class QType(enum.IntEnum):
    A = 1  #: IPv4 address
    NS = 2  #: name server
    CNAME = 5  #: canonical name
    SOA = 6  #: start of authority
    PTR = 12  #: pointer
    HINFO = 13  #: host information (RFC 8482's answer to ANY)
    MX = 15  #: mail exchange
    TXT = 16  #: text
    AAAA = 28  #: IPv6 address
    SRV = 33  #: service locator
    OPT = 41  #: EDNS(0) pseudo-record
    IXFR = 251  #: incremental zone transfer (RFC 1995)
    AXFR = 252  #: whole zone transfer (RFC 5936)
    SVCB = 64  #: service binding
    HTTPS = 65  #: HTTPS service binding
    ANY = 255  #: all records


class EdeCode(enum.IntEnum):
    """Extended DNS Error info codes (RFC 8914) that dnsfilter sends."""

    OTHER = 0  #: none of the others; the text says what (a client over its rate limit)
    STALE_ANSWER = 3  #: an expired cache entry, served because no upstream answered
    BLOCKED = 15  #: the name is on a blocklist
    PROHIBITED = 18  #: the client may not use this resolver
    NOT_SUPPORTED = 21  #: a request a resolver does not serve (a zone transfer)
    NO_REACHABLE_AUTHORITY = 22  #: every upstream was asked and none answered in time
    NETWORK_ERROR = 23  #: no upstream could be reached


CLASS_IN = 1
_OPT_CODE_EDE = 15


class Query(NamedTuple):
    """One client query, parsed as far as the resolver needs.

    A NamedTuple rather than a frozen dataclass: it is built once per packet on the hot
    path, and a tuple is immutable and three times cheaper to construct.
    """

    wire: bytes
    id: int
    flags: int
    #: presentation form (RFC 4343: lowercased, escaped where a label needs it), without
    #: the trailing dot; "" is the root. One-to-one with the wire name: the key of the cache
    #: and of the policy, and the only text of the name that logs and the audit log see.
    qname: str
    qtype: int
    qclass: int
    question_end: int  #: offset just past the question section
    edns: bool  #: the query carried an OPT record
    do: bool  #: DNSSEC OK bit
    max_size: int  #: largest reply the client accepts on its transport
    client: tuple[str, int]
    transport: Transport

    @property
    def cd(self) -> bool:
        return bool(self.flags & _CD)

    @property
    def question(self) -> bytes:
        return self.wire[HEADER_LEN : self.question_end]


def parse_query(
    data: bytes,
    client: tuple[str, int],
    transport: Transport,
    udp_limit: int = DEFAULT_UDP_SIZE,
) -> Query:
    """Parse a query's header, question and OPT record.

    Raises DropPacket, NotImplementedOpcode, FormatError, BadVersion or Unverifiable, all
    WireErrors: nothing else escapes, whatever the bytes.
    """
    try:
        msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    except struct.error:
        raise DropPacket("shorter than a DNS header") from None
    if flags & _QR:
        raise DropPacket("a response, not a query")
    if flags & _OPCODE_MASK:
        raise NotImplementedOpcode(f"opcode {(flags & _OPCODE_MASK) >> 11}")
    if qdcount != 1:
        raise FormatError(f"QDCOUNT is {qdcount}, not 1")

    # Reading past the end raises IndexError (or struct.error for type and class): one
    # handler instead of a bounds check per label.
    labels = []
    pos = HEADER_LEN
    try:
        length = data[pos]
        while length:
            if length > 63:
                raise FormatError("compressed or extended label in the question")
            end = pos + 1 + length
            labels.append(data[pos + 1 : end])
            pos = end
            length = data[pos]
        qtype, qclass = _TYPE_CLASS.unpack_from(data, pos + 1)
    except (IndexError, struct.error):
        raise FormatError("question runs past the end") from None
    if pos - HEADER_LEN >= 255:
        raise FormatError("question name longer than 255 octets")
    question_end = pos + 5
    # Case folding is ASCII-only in DNS (RFC 4343), which is exactly what bytes.lower does.
    # Labels of letters, digits and the like join into the presentation form as they are;
    # a label holding a dot, a backslash or a byte that is not printable is escaped, so no
    # two names on the wire share a qname (cache key, in-flight key, policy match).
    joined = b".".join(labels).lower()
    if joined.translate(_MARK_SPECIAL).count(92) == len(labels) - 1:
        qname = joined.decode("ascii")
    else:
        qname = name_text([label.lower() for label in labels])

    edns = do = False
    max_size = MAX_TCP_SIZE if transport is Transport.TCP else CLASSIC_UDP_SIZE
    if ancount or nscount or arcount:
        opt = _find_opt(data, question_end, ancount, nscount, arcount)
        if opt is not None:
            payload, version, opt_flags = opt
            edns = True
            do = bool(opt_flags & _DO)
            if version != 0:
                raise BadVersion(f"EDNS version {version}", question_end)
            if transport is Transport.UDP:
                max_size = max(CLASSIC_UDP_SIZE, min(payload, udp_limit))
    # tuple.__new__ directly: half the cost of the NamedTuple's own __new__.
    return _new_tuple(
        Query,
        (
            data,
            msg_id,
            flags,
            qname,
            qtype,
            qclass,
            question_end,
            edns,
            do,
            max_size,
            client,
            transport,
        ),
    )


_new_tuple = tuple.__new__

#: Bytes a label shows escaped in presentation form (RFC 1035 5.1, RFC 4343 2.1): the ones
#: with a meaning in master files, as dnspython escapes them, and every byte outside
#: printable ASCII (as \\DDD), so no control byte or newline reaches a log line.
_ESCAPED = frozenset(b'"().;\\@$')
#: Each byte of a label in presentation form.
_BYTE_TEXT = tuple(
    f"\\{chr(b)}" if b in _ESCAPED else chr(b) if 0x21 <= b <= 0x7E else f"\\{b:03d}"
    for b in range(256)
)
#: Maps the joining dot and every byte that needs an escape to a backslash: a name needs
#: none when the backslashes so made are exactly its joining dots.
_MARK_SPECIAL = bytes(
    0x5C if b == 0x2E or b in _ESCAPED or not 0x21 <= b <= 0x7E else b for b in range(256)
)


def name_text(labels: tuple[bytes, ...] | list[bytes]) -> str:
    """The presentation form of a name's labels (as given; no case folding), without the
    trailing dot: "" for the root. It is one-to-one: escaped labels never meet plain ones."""
    table = _BYTE_TEXT
    return ".".join("".join([table[b] for b in label]) for label in labels)


_TSIG = 250
_SIG = 24  #: as SIG(0) (RFC 2931): in the additional section, class ANY


def _find_opt(
    data: bytes, pos: int, ancount: int, nscount: int, arcount: int
) -> tuple[int, int, int] | None:
    """Walk the records after the question; return (payload, version, flags) of the OPT.

    Raises Unverifiable for a TSIG or SIG(0) signature, which we have no key to check."""
    found: tuple[int, int, int] | None = None
    question_end = pos
    size = len(data)
    first_additional = ancount + nscount
    for index in range(ancount + nscount + arcount):
        owner_start = pos
        pos = skip_name(data, pos)
        if pos + 10 > size:
            raise FormatError("record header runs past the end")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        pos += 10 + rdlen
        if pos > size:
            raise FormatError("record data runs past the end")
        if rtype == _TSIG or (rtype == _SIG and index >= first_additional and rclass == 255):
            if rtype == _TSIG and (index != ancount + nscount + arcount - 1 or pos != size):
                raise FormatError("TSIG record is not the last one")
            if rtype == _TSIG:
                raise Unverifiable("TSIG-signed query", question_end, owner_start)
            raise Unverifiable("SIG(0)-signed query", question_end, None)
        if rtype == QType.OPT:
            if index < first_additional:
                raise FormatError("OPT record outside the additional section")
            if found is not None:
                raise FormatError("more than one OPT record")
            if data[owner_start] != 0:
                raise FormatError("OPT record owner is not the root")
            found = (rclass, (ttl >> 16) & 0xFF, ttl & 0xFFFF)
    return found


def skip_name(data: bytes, pos: int) -> int:
    """Return the offset just past the (possibly compressed) name at pos."""
    size = len(data)
    while True:
        if pos >= size:
            raise FormatError("name runs past the end")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > size:
                raise FormatError("compression pointer runs past the end")
            target = _U16.unpack_from(data, pos)[0] & 0x3FFF
            if target >= pos:
                raise FormatError("compression pointer does not point backwards")
            if target < HEADER_LEN:
                raise FormatError("compression pointer into the header")
            return pos + 2
        if length > 63:
            raise FormatError("unknown label type")
        pos += 1 + length


def read_name(data: bytes, pos: int) -> str:
    """Decode the (possibly compressed) name at pos in presentation form, as parse_query
    spells a qname: lowercased, escaped where a label needs it, no trailing dot."""
    return name_text(read_labels(data, pos))


def read_labels(data: bytes, pos: int) -> tuple[bytes, ...]:
    """The lowercased labels of the (possibly compressed) name at pos, root excluded."""
    labels: list[bytes] = []
    size = len(data)
    jumps = 0
    total = 1  # the root label's zero octet counts towards the 255
    while True:
        if pos >= size:
            raise FormatError("name runs past the end")
        length = data[pos]
        if length == 0:
            return tuple(label.lower() for label in labels)
        if length & 0xC0 == 0xC0:
            if pos + 2 > size:
                raise FormatError("compression pointer runs past the end")
            jumps += 1
            if jumps > 64:
                raise FormatError("compression pointer loop")
            pos = _U16.unpack_from(data, pos)[0] & 0x3FFF
            # The header is the client's in a reply served from the cache: a name read
            # through it here would not be the name the client reads.
            if pos < HEADER_LEN:
                raise FormatError("compression pointer into the header")
            continue
        if length > 63:
            raise FormatError("unknown label type")
        total += length + 1
        if total > 255:
            raise FormatError("name longer than 255 octets")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


# ---------------------------------------------------------------------------------------
# Reply builders


def reply_flags(query_flags: int, rcode: int) -> int:
    """Flags of a recursive reply to a query: QR and RA set, RD and CD echoed."""
    return _QR | _RA | (query_flags & _ECHOED_FLAGS) | (rcode & 0xF)


def opt_record(do: bool, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """Our OPT pseudo-record: root owner, our payload size, the client's DO bit."""
    return (
        b"\x00\x00\x29"
        + _U16.pack(DEFAULT_UDP_SIZE)
        + bytes((ext_rcode, 0))
        + _U16.pack(_DO if do else 0)
        + _U16.pack(len(options))
        + options
    )


#: RFC 8467 4.1: queries over an encrypted transport are padded to a multiple of this.
QUERY_PADDING_BLOCK = 128
_OPT_CODE_PADDING = 12
_EMPTY_OPT_START = b"\x00\x00\x29"


def padded_query(wire: bytes, block: int = QUERY_PADDING_BLOCK) -> bytes:
    """wire with an EDNS Padding option (RFC 7830) that makes it a multiple of block
    octets, so the length of a query sent over TLS does not tell the name's length; wire
    as it is unless it ends with an OPT record without options (as our queries do)."""
    if len(wire) < HEADER_LEN + 11 or wire[-11:-8] != _EMPTY_OPT_START or wire[-2:] != b"\0\0":
        return wire
    padding = -(len(wire) + 4) % block
    return (
        wire[:-2]
        + _U16.pack(4 + padding)
        + _U16.pack(_OPT_CODE_PADDING)
        + _U16.pack(padding)
        + bytes(padding)
    )


def ede_option(code: EdeCode, text: str = "") -> bytes:
    """An Extended DNS Error option (RFC 8914) for the OPT record."""
    payload = _U16.pack(code) + text.encode("utf-8")
    return _U16.pack(_OPT_CODE_EDE) + _U16.pack(len(payload)) + payload


def build_reply(
    q: Query,
    rcode: int,
    answer: bytes = b"",
    ancount: int = 0,
    authority: bytes = b"",
    nscount: int = 0,
    ede: bytes = b"",
) -> bytes:
    """A reply to q echoing its question; an OPT (with ede) is added when q had EDNS."""
    if q.edns:
        tail = opt_record(q.do, rcode >> 4, ede)
        arcount = 1
    else:
        tail = b""
        arcount = 0
    return (
        _HEADER.pack(q.id, reply_flags(q.flags, rcode), 1, ancount, nscount, arcount)
        + q.wire[HEADER_LEN : q.question_end]
        + answer
        + authority
        + tail
    )


#: At most this many questions are echoed in an error reply (a QDCOUNT of 2 is the case
#: seen in practice; the cap keeps a reply no larger than a plausible query's).
_MAX_ECHOED_QUESTIONS = 4


def error_reply(data: bytes, rcode: Rcode) -> bytes:
    """FORMERR or NOTIMP for a query we will not answer, as unbound and BIND give it: the
    questions echoed when they can be read (so the stub can match the reply), the OPT of a
    query that had one, and RA clear, for nothing was resolved.

    Only names without compression are echoed: a pointer would point into the query, not
    into the reply. Anything that cannot be read leaves a header-only reply."""
    msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    flags = _QR | (flags & (_OPCODE_MASK | _ECHOED_FLAGS)) | rcode
    end = HEADER_LEN
    echoed = 0
    if 0 < qdcount <= _MAX_ECHOED_QUESTIONS:
        end = _plain_questions_end(data, qdcount)
        echoed = qdcount if end > HEADER_LEN else 0
    tail = b""
    if echoed:
        try:
            opt = _find_opt(data, end, ancount, nscount, arcount)
        except WireError:
            opt = None
        if opt is not None:
            tail = opt_record(bool(opt[2] & _DO))
    return _HEADER.pack(msg_id, flags, echoed, 0, 0, 1 if tail else 0) + data[HEADER_LEN:end] + tail


def _plain_questions_end(data: bytes, count: int) -> int:
    """The end of count uncompressed questions after the header, or HEADER_LEN if they do
    not read as such."""
    pos = HEADER_LEN
    size = len(data)
    for _ in range(count):
        start = pos
        while pos < size and 0 < data[pos] <= 63:
            pos += 1 + data[pos]
        if pos >= size or data[pos] != 0 or pos - start >= 255:
            return HEADER_LEN
        pos += 5
        if pos > size:
            return HEADER_LEN
    return pos


def badvers_reply(data: bytes, question_end: int = HEADER_LEN) -> bytes:
    """BADVERS (RFC 6891 6.1.3): the question echoed, as in every other error reply, and an
    OPT carrying version 0."""
    msg_id, flags = _TYPE_CLASS.unpack_from(data)
    flags = _QR | _RA | (flags & _ECHOED_FLAGS) | (Rcode.BADVERS & 0xF)
    qdcount = 1 if question_end > HEADER_LEN else 0
    return (
        _HEADER.pack(msg_id, flags, qdcount, 0, 0, 1)
        + data[HEADER_LEN:question_end]
        + opt_record(False, Rcode.BADVERS >> 4)
    )


def notauth_reply(data: bytes, question_end: int, tsig_start: int | None) -> bytes:
    """NOTAUTH for a signed query we cannot verify: for TSIG, an unsigned TSIG record with
    error BADKEY and the query's key, algorithm, time and original ID (RFC 8945 5.2)."""
    msg_id, flags = _TYPE_CLASS.unpack_from(data)
    flags = reply_flags(flags, Rcode.NOTAUTH)
    question = data[HEADER_LEN:question_end]
    if tsig_start is None:
        return _HEADER.pack(msg_id, flags, 1, 0, 0, 0) + question
    key = encode_labels(read_labels(data, tsig_start))
    rdata_start = skip_name(data, tsig_start) + 10
    after_algorithm = skip_name(data, rdata_start)
    algorithm = encode_labels(read_labels(data, rdata_start))
    time_and_fudge = data[after_algorithm : after_algorithm + 8]
    (mac_size,) = _U16.unpack_from(data, after_algorithm + 8)
    original_id = data[after_algorithm + 10 + mac_size : after_algorithm + 12 + mac_size]
    if len(time_and_fudge) != 8 or len(original_id) != 2:
        raise FormatError("TSIG record runs past the end")
    no_mac = no_other_data = b"\x00\x00"
    rdata = algorithm + time_and_fudge + no_mac + original_id + _U16.pack(_BADKEY) + no_other_data
    tsig = key + _RR_FIXED.pack(_TSIG, 255, 0, len(rdata)) + rdata
    return _HEADER.pack(msg_id, flags, 1, 0, 0, 1) + question + tsig


#: TSIG error: the key is not known here (RFC 8945 4.3.3).
_BADKEY = 17


def encode_labels(labels: tuple[bytes, ...]) -> bytes:
    """The uncompressed wire form of a name's labels."""
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def truncate_for(q: Query, reply: bytes) -> bytes:
    """Return reply, or if it exceeds what the client accepts, an empty one with TC set."""
    if len(reply) <= q.max_size:
        return reply
    flags = _U16.unpack_from(reply, 2)[0] | _TC
    tail = opt_record(q.do) if q.edns else b""
    return (
        _HEADER.pack(q.id, flags, 1, 0, 0, 1 if tail else 0)
        + q.wire[HEADER_LEN : q.question_end]
        + tail
    )


def answer_record(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """A record owned by the question name (compression pointer to offset 12)."""
    return b"\xc0\x0c" + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


_SYNTHETIC_SOA_NAMES = (
    b"\x09dnsfilter\x07invalid\x00"  # MNAME
    + b"\x0ahostmaster\x09dnsfilter\x07invalid\x00"  # RNAME
)


def negative_soa(ttl: int) -> bytes:
    """A synthetic SOA for blocked negative answers, so caches below keep them for ttl.

    RFC 2308: the negative TTL is min(SOA TTL, MINIMUM); both are set to ttl.
    """
    rdata = _SYNTHETIC_SOA_NAMES + struct.pack("!IIIII", 1, 3600, 600, 86400, ttl)
    return answer_record(QType.SOA, ttl, rdata)


def make_query(qname: str, qtype: int, msg_id: int = 0, rd: bool = True) -> bytes:
    """A plain query for qname, for health checks and tests; no EDNS."""
    return (
        _HEADER.pack(msg_id, _RD if rd else 0, 1, 0, 0, 0)
        + encode_name(qname)
        + _TYPE_CLASS.pack(qtype, CLASS_IN)
    )


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a dotted name (no escapes; labels must be ASCII)."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        if not label.isascii():
            raise WireError(f"non-ASCII label in {name!r}; use its IDNA form")
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise WireError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise WireError(f"name longer than 255 octets: {name[:40]!r}...")
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Responses from upstreams


class RecordRef(NamedTuple):
    """Where one resource record sits in a response."""

    section: int  #: 1 answer, 2 authority, 3 additional
    rtype: int
    start: int  #: offset of the owner name
    ttl_offset: int
    ttl: int
    rdata_start: int
    end: int  #: offset just past the record


class ResponseScan(NamedTuple):
    """A response checked end to end, with the offsets the cache and policy need."""

    id: int
    flags: int
    rcode: int  #: including the extended bits from OPT
    question_end: int
    records: tuple[RecordRef, ...]  #: every record but OPT
    opt: RecordRef | None


def scan_response(data: bytes) -> ResponseScan:
    """Walk a whole response and check its bounds; raises FormatError if it is broken."""
    size = len(data)
    if size < HEADER_LEN:
        raise FormatError("shorter than a DNS header")
    msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if not flags & _QR:
        raise FormatError("not a response")
    if qdcount != 1:
        raise FormatError(f"QDCOUNT is {qdcount}, not 1")
    pos = skip_name(data, HEADER_LEN) + 4
    if pos > size:
        raise FormatError("question runs past the end")
    question_end = pos
    records: list[RecordRef] = []
    opt: RecordRef | None = None
    rcode = flags & 0xF
    first_authority = ancount
    first_additional = ancount + nscount
    for index in range(first_additional + arcount):
        section = 1 if index < first_authority else 2 if index < first_additional else 3
        start = pos
        # Owners are nearly always a pointer back into the message: checked here, inline.
        if pos < size and data[pos] >= 0xC0 and pos + 2 <= size:
            target = (data[pos] & 0x3F) << 8 | data[pos + 1]
            if target >= pos or target < HEADER_LEN:
                raise FormatError("compression pointer not backwards into the records")
            pos += 2
        else:
            pos = skip_name(data, pos)
        if pos + 10 > size:
            raise FormatError("record header runs past the end")
        rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        rdata_start = pos + 10
        end = rdata_start + rdlen
        if end > size:
            raise FormatError("record data runs past the end")
        ref = _new_tuple(RecordRef, (section, rtype, start, pos + 4, ttl, rdata_start, end))
        if rtype == _OPT:
            if opt is not None or section != 3:
                raise FormatError("misplaced or repeated OPT record")
            opt = ref
            rcode |= (ttl >> 24) << 4
        else:
            records.append(ref)
        pos = end
    return _new_tuple(ResponseScan, (msg_id, flags, rcode, question_end, tuple(records), opt))


_OPT = 41  #: QType.OPT as a plain int: an IntEnum compare costs a lookup per record


def same_question(a: bytes, b: bytes) -> bool:
    """Do two question sections ask the same? Names compare case-insensitively, types exactly."""
    return len(a) == len(b) and a[-4:] == b[-4:] and a[:-4].lower() == b[:-4].lower()


def soa_minimum(data: bytes, ref: RecordRef) -> int:
    """The MINIMUM field of an SOA record: its last four rdata octets."""
    if ref.end - ref.rdata_start < 22:
        raise FormatError("SOA record too short")
    return int(_U32.unpack_from(data, ref.end - 4)[0])


# ---------------------------------------------------------------------------------------
# EDNS options on TCP replies: edns-tcp-keepalive (RFC 7828)

OPT_TCP_KEEPALIVE = 11  #: the edns-tcp-keepalive option code


def query_has_option(data: bytes, code: int) -> bool:
    """Does the query's OPT record carry an option with this code? False when there is no
    OPT or the message cannot be walked (the query parser reports what is wrong with it)."""
    try:
        _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if not arcount or qdcount != 1:
            return False
        pos = skip_name(data, HEADER_LEN) + 4
        first_additional = ancount + nscount
        for index in range(first_additional + arcount):
            pos = skip_name(data, pos)
            rtype, _, _, rdlen = _RR_FIXED.unpack_from(data, pos)
            start = pos + 10
            pos = start + rdlen
            if rtype == _OPT and index >= first_additional:
                end = min(pos, len(data))
                while start + 4 <= end:
                    option, length = _TYPE_CLASS.unpack_from(data, start)
                    if option == code:
                        return True
                    start += 4 + length
                return False
    except (FormatError, struct.error):
        return False
    return False


def tcp_keepalive_option(timeout: float) -> bytes:
    """edns-tcp-keepalive carrying an idle timeout, in the option's units of 100 ms."""
    units = min(0xFFFF, max(0, round(timeout * 10)))
    return _U16.pack(OPT_TCP_KEEPALIVE) + _U16.pack(2) + _U16.pack(units)


def add_option(reply: bytes, option: bytes) -> bytes:
    """reply with option appended to its OPT record's data. Unchanged when the reply has no
    OPT, its OPT is not the last record (moving later records would break their compression
    pointers), or it would grow past 65535 octets."""
    try:
        opt = scan_response(reply).opt
    except FormatError:
        return reply
    if opt is None or opt.end != len(reply) or len(reply) + len(option) > MAX_TCP_SIZE:
        return reply
    length = opt.end - opt.rdata_start + len(option)
    return reply[: opt.rdata_start - 2] + _U16.pack(length) + reply[opt.rdata_start :] + option
