"""Hand-built wire bytes for the egress tests: TLS ClientHellos and DNS queries.

By hand rather than through scapy's TLS layer, which needs the cryptography package to build
a record; the layout follows RFC 8446 4.1.2 and RFC 6066 3 field by field.
"""

from __future__ import annotations

import struct

#: RFC 8448 section 3 ("Simple 1-RTT Handshake"): a real ClientHello handshake message from a
#: TLS 1.3 implementation, server_name "server". Published bytes, not generated here.
RFC8448_CLIENT_HELLO = bytes.fromhex(
    "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113"
    "031302010000910000000b0009000006736572766572ff01000100000a00140012001d001700180019010001"
    "0101020103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae"
    "4d5413691e529aaf2c002b0003020304000d0020001e040305030603020308040805080604010501060102010"
    "402050206020202002d00020101001c00024001"
)


def record(handshake: bytes, version: bytes = b"\x03\x01") -> bytes:
    """A TLS record of type handshake around one handshake message."""
    return b"\x16" + version + struct.pack("!H", len(handshake)) + handshake


def extension(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def server_name_extension(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(struct.pack("!BH", name_type, len(n)) + n for n in names)
    return extension(0, struct.pack("!H", len(entries)) + entries)


def client_hello(
    sni: str | None,
    before: list[bytes] | None = None,
    after: list[bytes] | None = None,
    session_id: bytes = b"\x11" * 32,
    extensions: bool = True,
) -> bytes:
    """A whole TLS record holding a ClientHello; extensions before/after the server_name."""
    body = b"\x03\x03" + bytes(range(32))  # legacy_version, random
    body += struct.pack("!B", len(session_id)) + session_id
    body += struct.pack("!H", 6) + b"\x13\x01\x13\x02\x13\x03"  # cipher_suites
    body += b"\x01\x00"  # compression: null only
    if extensions:
        exts = list(before or [])
        if sni is not None:
            exts.append(server_name_extension(sni.encode("ascii")))
        exts += after or []
        joined = b"".join(exts)
        body += struct.pack("!H", len(joined)) + joined
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return record(handshake)


#: Extensions a browser sends around server_name. The X25519MLKEM768 key share (1216 bytes)
#: and padding make the hello about 1.9 kB, more than one 1460-byte TCP segment, as Chrome's is.
SUPPORTED_GROUPS = extension(10, bytes.fromhex("0004001d0017"))
BIG_KEY_SHARE = extension(
    51, struct.pack("!H", 1220) + struct.pack("!HH", 0x11EC, 1216) + bytes(1216)
) + extension(21, bytes(512))


def dns_query(name: str, qtype: int = 1, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    """A DNS query message with one question (RD set by default)."""
    wire = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0)
    for label in name.split(".") if name else []:
        wire += bytes([len(label)]) + label.encode("ascii")
    return wire + b"\x00" + struct.pack("!HH", qtype, 1)
