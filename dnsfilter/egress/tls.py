"""The server name (SNI) of a TLS ClientHello, read by hand from the first bytes of a TCP stream.

Only what finding the name needs is parsed: the record header, the handshake header, and the
ClientHello fields up to and through its extensions (RFC 8446 4.1.2, RFC 6066 3). Every read is
bounds-checked; junk raises TlsError and nothing else.

A ClientHello can be larger than one TCP segment (post-quantum key shares make Chrome's about
1.8 kB), and the monitor does not reassemble streams. So the walk stops where the bytes stop:
a server_name met before the cut is returned, otherwise TlsTruncated says the name may lie in
a later segment.
"""

from __future__ import annotations

#: TLS record content type of handshake messages.
CONTENT_HANDSHAKE = 22
#: Handshake message type of a ClientHello.
HANDSHAKE_CLIENT_HELLO = 1
#: Extension type of server_name (RFC 6066).
EXTENSION_SERVER_NAME = 0
#: ServerName name_type of a DNS host name, the only one defined.
NAME_TYPE_HOST_NAME = 0

_RECORD_HEADER = 5
_MAX_RECORD = (1 << 14) + 2048  #: largest TLSCiphertext length (RFC 8446 5.2)


class TlsError(Exception):
    """The bytes are not the start of a TLS ClientHello that can be read."""


class TlsTruncated(TlsError):
    """The ClientHello goes on past the bytes given, and no server name came before the cut."""


def looks_like_client_hello(data: bytes) -> bool:
    """A cheap first test, so that ordinary TCP payloads skip the parser entirely."""
    return len(data) > 5 and data[0] == CONTENT_HANDSHAKE and data[5] == HANDSHAKE_CLIENT_HELLO


def client_hello_sni(data: bytes) -> str | None:
    """The host name a ClientHello asks for, lowercased without a trailing dot; None if it
    names none. Raises TlsError (or TlsTruncated) when the bytes are not a readable
    ClientHello."""
    if len(data) < _RECORD_HEADER:
        raise TlsTruncated("shorter than a TLS record header")
    if data[0] != CONTENT_HANDSHAKE:
        raise TlsError(f"record type {data[0]}, not handshake")
    if data[1] != 3:
        raise TlsError(f"record version {data[1]}.{data[2]} is not TLS")
    record_length = (data[3] << 8) | data[4]
    if record_length == 0 or record_length > _MAX_RECORD:
        raise TlsError(f"record length {record_length} out of range")
    declared_end = _RECORD_HEADER + record_length
    cursor = _Cursor(data, _RECORD_HEADER, declared_end)
    if cursor.u8() != HANDSHAKE_CLIENT_HELLO:
        raise TlsError("handshake message is not a ClientHello")
    body_length = cursor.u24()
    if body_length < 38:
        raise TlsError(f"ClientHello length {body_length} is too short")
    # A ClientHello split over several records is legal but rare; the first record's
    # end is then where this parser's view ends.
    cursor.limit_to(min(cursor.pos + body_length, declared_end))
    cursor.skip(2 + 32)  # legacy_version, random
    cursor.skip(cursor.u8())  # legacy_session_id
    cursor.skip(cursor.u16())  # cipher_suites
    cursor.skip(cursor.u8())  # legacy_compression_methods
    if cursor.at_end():
        return None  # no extensions at all: an old client, and no name
    extensions_end = cursor.pos + 2 + cursor.u16()
    cursor.limit_to(extensions_end)
    while not cursor.at_end():
        ext_type = cursor.u16()
        ext_length = cursor.u16()
        if ext_type == EXTENSION_SERVER_NAME:
            return _server_name(cursor.sub(ext_length))
        cursor.skip(ext_length)
    return None


def _server_name(cursor: _Cursor) -> str | None:
    list_end = cursor.pos + 2 + cursor.u16()
    cursor.limit_to(list_end)
    while not cursor.at_end():
        name_type = cursor.u8()
        name = cursor.take(cursor.u16())
        if name_type != NAME_TYPE_HOST_NAME:
            continue
        if not name or len(name) > 255:
            raise TlsError(f"server name of length {len(name)}")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise TlsError("server name is not ASCII") from None
        return text.lower().rstrip(".")
    return None


class _Cursor:
    """Big-endian reads inside data[pos:end], where end is a structure's declared end.

    Reading past end means the lengths contradict each other (TlsError); reading past the
    captured bytes while still inside end means the capture was cut (TlsTruncated).
    """

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def limit_to(self, end: int) -> None:
        """Narrow the range to a nested structure's declared end."""
        if end > self.end:
            raise TlsError("a length field runs past its enclosing structure")
        self.end = end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _need(self, count: int) -> None:
        stop = self.pos + count
        if stop > self.end:
            raise TlsError("a length field runs past its enclosing structure")
        if stop > len(self.data):
            raise TlsTruncated("the ClientHello continues past the captured bytes")

    def u8(self) -> int:
        self._need(1)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        self._need(2)
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return value

    def u24(self) -> int:
        self._need(3)
        d, p = self.data, self.pos
        self.pos += 3
        return (d[p] << 16) | (d[p + 1] << 8) | d[p + 2]

    def skip(self, count: int) -> None:
        self._need(count)
        self.pos += count

    def take(self, count: int) -> bytes:
        self._need(count)
        value = self.data[self.pos : self.pos + count]
        self.pos += count
        return value

    def sub(self, count: int) -> _Cursor:
        """A cursor over the next count bytes, which this one then steps over."""
        if self.pos + count > self.end:
            raise TlsError("a length field runs past its enclosing structure")
        child = _Cursor(self.data, self.pos, self.pos + count)
        self.pos += count
        return child
