"""Test doubles for upstream DNS servers.

``ScriptedUpstream`` is a small authoritative DNS server on loopback (UDP and TCP on one port)
that can be told to misbehave: delay, drop, truncate, answer with a wrong ID or question,
SERVFAIL, REFUSED or garbage. It runs its own asyncio loop in a background thread, so it serves
sync tests, async tests and resolvers running as subprocesses alike, and it records every query
it receives in ``calls``.

    with ScriptedUpstream() as up:
        up.add("www.example.test", "A", "192.0.2.10", ttl=60).delay(0.2)
        ...  # point the resolver at up.address
        assert [c.qname for c in up.calls] == ["www.example.test"]

Zone model: the built-in zone ``example.test`` (SOA MINIMUM ``negative_ttl``) plus whatever is
added. Unknown names get NXDOMAIN, known names with other types NODATA; both carry the SOA of
the closest enclosing zone (a synthetic root SOA outside every zone). CNAMEs are chased inside
the table, ``*.`` names are wildcards, and UDP answers larger than 512 bytes (or the query's
EDNS size) come back with TC=1 and no records, as from a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import os
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Self, cast

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSRecord

Transport = Literal["udp", "tcp"]

#: EDNS payload size this server advertises in answers to EDNS queries.
EDNS_PAYLOAD = 1232
#: Largest UDP answer sent to a query without EDNS (RFC 1035).
CLASSIC_UDP_LIMIT = 512

_OPCODE_QUERY = 0
_RCODE_FORMERR = 1
_RCODE_NOTIMP = 4
_CLASS_IN = 1
_DO_BIT = 0x8000
_MAX_CNAME_CHAIN = 8
_STARTUP_TIMEOUT = 5.0
_SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Call:
    """One query received by a ScriptedUpstream.

    ``qname`` is lowercased without the trailing dot; for a query that could not be parsed it is
    ``""`` and so is ``qtype`` (``id`` is then read from the header, or 0 if shorter than 2 bytes).
    """

    transport: Transport
    qname: str
    qtype: str
    id: int
    src: tuple[str, int]
    has_edns: bool
    do: bool
    wire: bytes


class Behaviour(enum.Enum):
    """How a ScriptedUpstream answers."""

    NORMAL = "normal"  #: answer from the record table
    DROP = "drop"  #: never answer
    TRUNCATE = "truncate"  #: UDP: TC=1 and no records; TCP: the full answer
    WRONG_ID = "wrong_id"  #: answer under another message ID
    WRONG_QUESTION = "wrong_question"  #: answer for another qname
    SERVFAIL = "servfail"  #: RCODE SERVFAIL, no records
    REFUSED = "refused"  #: RCODE REFUSED, no records
    GARBAGE = "garbage"  #: random bytes


@dataclass(frozen=True, slots=True)
class _Rule:
    """A behaviour (None: inherit the global one) and a delay (None: inherit)."""

    behaviour: Behaviour | None = None
    delay: float | None = None
    then_correct: bool = False  # WRONG_ID / WRONG_QUESTION: send the correct answer after
    keep_id: bool = False  # GARBAGE: start the garbage with the query's ID


_NORMAL = _Rule(behaviour=Behaviour.NORMAL, delay=0.0)


@dataclass(frozen=True, slots=True)
class _Record:
    rtype: int
    ttl: int
    rdata: Any  # a dnslib RD; shared between answers, never mutated
    text: str  # presentation form, for de-duplication


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to send back for one query, decided when it arrives."""

    delay: float
    replies: tuple[bytes, ...]


def _normalize(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _qtype_code(qtype: str) -> int:
    try:
        code = getattr(QTYPE, qtype.upper())
    except Exception as exc:
        raise ValueError(f"unknown record type {qtype!r}") from exc
    return int(code)


def _qtype_text(code: int) -> str:
    return str(QTYPE[code])


def _is_ipv6(host: str) -> bool:
    return ipaddress.ip_address(host).version == 6


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:53`` or ``[::1]:53``."""
    return f"[{host}]:{port}" if _is_ipv6(host) else f"{host}:{port}"


def bind_udp_tcp(
    host: str, port: int = 0, attempts: int = 50
) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket to the same port on ``host`` (port 0: pick a free one).

    The UDP socket is bound first; when the TCP bind to its port fails with EADDRINUSE a new
    port is tried. The caller owns (and must close) both sockets.
    """
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    for _ in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            chosen = int(udp.getsockname()[1])
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, chosen))
            except OSError as exc:
                tcp.close()
                if exc.errno == errno.EADDRINUSE and port == 0:
                    udp.close()
                    continue
                raise
        except BaseException:
            udp.close()
            raise
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


def _header_id(data: bytes) -> int:
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 0


class ScriptedUpstream:
    """A DNS server on loopback whose answers tests script; see the module docstring.

    Configuration methods return ``self`` and may be called while the server runs. Behaviour
    methods take an optional ``name=`` to apply only to queries for that exact name.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        negative_ttl: int = 60,
        zone: str = "example.test",
    ) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._calls_changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._errors: list[BaseException] = []
        self._records: dict[str, dict[int, list[_Record]]] = {}
        self._zones: set[str] = set()
        self._default_negative_ttl = negative_ttl
        self._rule = _NORMAL
        self._name_rules: dict[str, _Rule] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        # Only touched from the server thread:
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_TcpProtocol] = set()
        self._closing = False
        self.zone(zone, negative_ttl=negative_ttl)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6)."""
        return format_address(self.host, self.port)

    def start(self) -> Self:
        """Bind UDP+TCP and start serving in a background thread."""
        if self._thread is not None:
            raise RuntimeError("ScriptedUpstream already started")
        udp, tcp = bind_udp_tcp(self.host, self.port)
        self.port = int(udp.getsockname()[1])
        self._ready.clear()
        self._startup_error = None
        self._closing = False
        thread = threading.Thread(
            target=self._run, args=(udp, tcp), name=f"ScriptedUpstream-{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()
        if not self._ready.wait(_STARTUP_TIMEOUT):
            self.stop()
            raise RuntimeError(f"ScriptedUpstream on {self.address} did not start")
        if self._startup_error is not None:
            thread.join(_SHUTDOWN_TIMEOUT)
            self._thread = None
            raise RuntimeError(f"ScriptedUpstream on {self.address} failed to start") from (
                self._startup_error
            )
        return self

    def stop(self) -> None:
        """Stop serving, close every socket and join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: thread is ending
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(_SHUTDOWN_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"ScriptedUpstream on {self.address} did not stop")
        self._thread = None
        self._loop = None
        self._stop_event = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- records ------------------------------------------------------------------------------

    def zone(self, origin: str, *, negative_ttl: int = 60, soa_ttl: int = 300) -> Self:
        """Add (or replace the SOA of) a zone; negative answers use its SOA MINIMUM."""
        origin = _normalize(origin)
        mname = f"ns1.{origin}" if origin else "ns1.invalid"
        rname = f"hostmaster.{origin}" if origin else "hostmaster.invalid"
        soa = f"{mname}. {rname}. 1 7200 3600 1209600 {negative_ttl}"
        return self.add(origin, "SOA", soa, ttl=soa_ttl)

    def add(self, name: str, qtype: str, rdata: str, ttl: int = 300) -> Self:
        """Add one record, e.g. ``add("www.example.test", "A", "192.0.2.10", ttl=60)``.

        ``rdata`` is in zone-file syntax (``"10 mail.example.test"`` for MX); TXT text is quoted
        for you unless it starts with ``"``. Several records for one name and type are returned
        together. Adding an SOA makes ``name`` a zone.
        """
        name = _normalize(name)
        code = _qtype_code(qtype)
        text = rdata.strip()
        if code == QTYPE.TXT and not text.startswith('"'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        owner = f"{name}." if name else "."
        try:
            parsed = RR.fromZone(f"{owner} {int(ttl)} IN {qtype.upper()} {text}")
        except Exception as exc:
            raise ValueError(f"bad {qtype} rdata for {name}: {rdata!r} ({exc})") from exc
        if len(parsed) != 1 or parsed[0].rtype != code:
            raise ValueError(f"bad {qtype} rdata for {name}: {rdata!r}")
        record = _Record(rtype=code, ttl=int(ttl), rdata=parsed[0].rdata, text=str(parsed[0].rdata))
        with self._lock:
            rrset = self._records.setdefault(name, {}).setdefault(code, [])
            if code == QTYPE.SOA:
                rrset.clear()
                self._zones.add(name)
            if all(r.text != record.text for r in rrset):
                rrset.append(record)
        return self

    def remove(self, name: str, qtype: str | None = None) -> Self:
        """Remove all records of ``qtype`` (or all records) at ``name``."""
        name = _normalize(name)
        with self._lock:
            if qtype is None:
                self._records.pop(name, None)
                self._zones.discard(name)
            else:
                code = _qtype_code(qtype)
                self._records.get(name, {}).pop(code, None)
                if code == QTYPE.SOA:
                    self._zones.discard(name)
        return self

    def large(
        self, n_records: int = 40, name: str = "big.example.test", qtype: str = "TXT"
    ) -> Self:
        """Give ``name`` ``n_records`` distinct records of ``qtype`` (A, AAAA or TXT).

        40 TXT records make a ~2.5 kB answer; 40 A records ~0.7 kB (more than 512 bytes).
        """
        kind = qtype.upper()
        base4 = int(ipaddress.IPv4Address("198.18.0.1"))
        base6 = int(ipaddress.IPv6Address("2001:db8:b16::1"))
        for i in range(n_records):
            if kind == "A":
                self.add(name, "A", str(ipaddress.IPv4Address(base4 + i)))
            elif kind == "AAAA":
                self.add(name, "AAAA", str(ipaddress.IPv6Address(base6 + i)))
            elif kind == "TXT":
                self.add(name, "TXT", f"record-{i:04d}-" + "x" * 40)
            else:
                raise ValueError(f"large() supports A, AAAA and TXT, not {qtype!r}")
        return self

    # -- behaviour ----------------------------------------------------------------------------

    def _set_rule(self, name: str | None, **changes: Any) -> Self:
        with self._lock:
            if name is None:
                base = self._rule
                if "behaviour" in changes:
                    base = replace(base, then_correct=False, keep_id=False)
                self._rule = replace(base, **changes)
            else:
                key = _normalize(name)
                base = self._name_rules.get(key, _Rule())
                if "behaviour" in changes:
                    base = replace(base, then_correct=False, keep_id=False)
                self._name_rules[key] = replace(base, **changes)
        return self

    def delay(self, seconds: float, *, name: str | None = None) -> Self:
        """Delay every answer (or answers for ``name``) by ``seconds``."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        return self._set_rule(name, delay=float(seconds))

    def drop(self, *, name: str | None = None) -> Self:
        """Never answer (until ``behave()``)."""
        return self._set_rule(name, behaviour=Behaviour.DROP)

    def truncate(self, *, name: str | None = None) -> Self:
        """Over UDP answer TC=1 with no records; over TCP answer fully."""
        return self._set_rule(name, behaviour=Behaviour.TRUNCATE)

    def wrong_id(self, then_correct: bool = False, *, name: str | None = None) -> Self:
        """Answer under a different ID (ID+1); with ``then_correct`` also send the real answer."""
        return self._set_rule(name, behaviour=Behaviour.WRONG_ID, then_correct=then_correct)

    def wrong_question(self, then_correct: bool = False, *, name: str | None = None) -> Self:
        """Answer with qname ``wrong.<qname>`` (same ID); ``then_correct`` as for wrong_id."""
        return self._set_rule(name, behaviour=Behaviour.WRONG_QUESTION, then_correct=then_correct)

    def servfail(self, *, name: str | None = None) -> Self:
        """Answer SERVFAIL."""
        return self._set_rule(name, behaviour=Behaviour.SERVFAIL)

    def refused(self, *, name: str | None = None) -> Self:
        """Answer REFUSED."""
        return self._set_rule(name, behaviour=Behaviour.REFUSED)

    def garbage(self, keep_id: bool = False, *, name: str | None = None) -> Self:
        """Answer 12-64 random bytes; with ``keep_id`` the first two are the query's ID."""
        return self._set_rule(name, behaviour=Behaviour.GARBAGE, keep_id=keep_id)

    def behave(self, *, name: str | None = None) -> Self:
        """Back to normal: without ``name`` clears every behaviour, delay and per-name rule;
        with ``name`` clears only that name's rule."""
        with self._lock:
            if name is None:
                self._rule = _NORMAL
                self._name_rules.clear()
            else:
                self._name_rules.pop(_normalize(name), None)
        return self

    def reset_behaviour(self) -> Self:
        """Same as ``behave()``."""
        return self.behave()

    # -- calls --------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every query received so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_for(self, qname: str) -> list[Call]:
        """The received queries for ``qname`` (any case, trailing dot optional)."""
        key = _normalize(qname)
        return [c for c in self.calls if c.qname == key]

    def clear_calls(self) -> Self:
        with self._lock:
            self._calls.clear()
        return self

    def wait_for_calls(self, count: int, timeout: float = 5.0) -> list[Call]:
        """Block until at least ``count`` queries were received; raise TimeoutError otherwise."""
        with self._calls_changed:
            if not self._calls_changed.wait_for(lambda: len(self._calls) >= count, timeout):
                raise TimeoutError(f"{len(self._calls)} of {count} expected queries received")
            return list(self._calls)

    @property
    def errors(self) -> list[BaseException]:
        """Internal errors caught while handling queries (a bug in this fake if not empty)."""
        with self._lock:
            return list(self._errors)

    # -- server thread ------------------------------------------------------------------------

    def _run(self, udp: socket.socket, tcp: socket.socket) -> None:
        try:
            asyncio.run(self._serve(udp, tcp))
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                with self._lock:
                    self._errors.append(exc)
        finally:
            udp.close()  # no-ops when the transports already closed them
            tcp.close()
            self._ready.set()

    async def _serve(self, udp: socket.socket, tcp: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        stop_event = asyncio.Event()
        udp_transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp)
        try:
            server = await loop.create_server(lambda: _TcpProtocol(self), sock=tcp)
        except BaseException:
            udp_transport.close()
            raise
        self._loop, self._stop_event = loop, stop_event
        self._ready.set()
        try:
            await stop_event.wait()
        finally:
            await self._shutdown(server, udp_transport)

    async def _shutdown(self, server: asyncio.Server, udp_transport: asyncio.BaseTransport) -> None:
        """Close everything before the loop ends, so no socket is left for the GC to find."""
        self._closing = True  # connections accepted from now on are aborted in connection_made
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # asyncio leaks the socket of an accept still under way when its Server is closed
        # (Server._attach asserts), so let those finish first; no await between the last check
        # and server.close(), so no new one can start in between.
        current = asyncio.current_task()
        for _ in range(100):
            if all(t is current or t.done() for t in asyncio.all_tasks()):
                break
            await asyncio.sleep(0)
        server.close()
        udp_transport.close()
        for connection in list(self._connections):
            connection.abort()
        await server.wait_closed()
        for _ in range(3):  # run the connection_lost callbacks that close the sockets
            await asyncio.sleep(0)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Record asyncio's unhandled errors (a bug here), except the noise of shutting down."""
        if self._closing:
            return
        exc = context.get("exception")
        with self._lock:
            self._errors.append(exc if exc is not None else RuntimeError(context.get("message")))

    def _dispatch(
        self, data: bytes, transport: Transport, src: tuple[str, int], send: Callable[[bytes], None]
    ) -> None:
        """Handle one query from the loop thread; never raises."""
        try:
            plan = self._plan(data, transport, src)
            if not plan.replies:
                return
            if plan.delay <= 0:
                for wire in plan.replies:
                    send(wire)
                return
            task = asyncio.get_running_loop().create_task(self._send_later(plan, send))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)

    async def _send_later(self, plan: _Plan, send: Callable[[bytes], None]) -> None:
        await asyncio.sleep(plan.delay)
        try:
            for wire in plan.replies:
                send(wire)
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)

    def _record(self, call: Call) -> None:
        with self._calls_changed:
            self._calls.append(call)
            self._calls_changed.notify_all()

    def _plan(self, data: bytes, transport: Transport, src: tuple[str, int]) -> _Plan:
        try:
            query = DNSRecord.parse(data)
            if not query.questions:
                raise ValueError("no question")
        except Exception:
            self._record(Call(transport, "", "", _header_id(data), src, False, False, data))
            if len(data) < 12 or data[2] & 0x80:  # no header, or a response: stay silent
                return _Plan(0.0, ())
            # FORMERR: same ID, QR=1, opcode and RD copied, no sections.
            flags = bytes([0x80 | (data[2] & 0x79), _RCODE_FORMERR])
            return _Plan(0.0, (data[:2] + flags + bytes(8),))

        question = query.q
        qname = _normalize(str(question.qname))
        opt = next((rr for rr in query.ar if rr.rtype == QTYPE.OPT), None)
        do = opt is not None and bool(opt.ttl & _DO_BIT)
        qtype = _qtype_text(question.qtype)
        self._record(Call(transport, qname, qtype, query.header.id, src, opt is not None, do, data))
        if query.header.qr:
            return _Plan(0.0, ())
        with self._lock:
            rule = self._effective_rule(qname)
            if query.header.opcode != _OPCODE_QUERY:
                reply = _skeleton(query, rcode=_RCODE_NOTIMP, edns=opt is not None, do=do)
            elif question.qclass != _CLASS_IN:
                reply = _skeleton(query, rcode=RCODE.REFUSED, edns=opt is not None, do=do)
            else:
                reply = self._authoritative_reply(query, qname, question.qtype, opt is not None, do)
        assert rule.behaviour is not None and rule.delay is not None
        udp_limit = (
            max(CLASSIC_UDP_LIMIT, int(opt.rclass)) if opt is not None else CLASSIC_UDP_LIMIT
        )
        replies = self._apply(rule, query, reply, transport, udp_limit, opt is not None, do)
        return _Plan(rule.delay, replies)

    def _effective_rule(self, qname: str) -> _Rule:
        rule = self._rule
        override = self._name_rules.get(qname)
        if override is None:
            return rule
        if override.behaviour is not None:
            rule = replace(
                rule,
                behaviour=override.behaviour,
                then_correct=override.then_correct,
                keep_id=override.keep_id,
            )
        if override.delay is not None:
            rule = replace(rule, delay=override.delay)
        return rule

    def _apply(
        self,
        rule: _Rule,
        query: Any,
        reply: Any,
        transport: Transport,
        udp_limit: int,
        edns: bool,
        do: bool,
    ) -> tuple[bytes, ...]:
        behaviour = rule.behaviour
        qid = int(query.header.id)
        if behaviour is Behaviour.DROP:
            return ()
        if behaviour is Behaviour.SERVFAIL:
            return (_skeleton(query, rcode=RCODE.SERVFAIL, edns=edns, do=do).pack(),)
        if behaviour is Behaviour.REFUSED:
            return (_skeleton(query, rcode=RCODE.REFUSED, edns=edns, do=do).pack(),)
        if behaviour is Behaviour.GARBAGE:
            junk = os.urandom(random.randint(12, 64))
            return ((qid.to_bytes(2, "big") + junk[2:]) if rule.keep_id else junk,)
        if behaviour is Behaviour.TRUNCATE and transport == "udp":
            return (_skeleton(query, rcode=RCODE.NOERROR, edns=edns, do=do, tc=True).pack(),)
        wire = reply.pack()
        if transport == "udp" and len(wire) > udp_limit:
            aa = bool(reply.header.aa)
            wire = _skeleton(
                query, rcode=reply.header.rcode, edns=edns, do=do, tc=True, aa=aa
            ).pack()
        if behaviour is Behaviour.WRONG_ID:
            wrong = ((qid + 1) & 0xFFFF).to_bytes(2, "big") + wire[2:]
            return (wrong, wire) if rule.then_correct else (wrong,)
        if behaviour is Behaviour.WRONG_QUESTION:
            wrong_reply = DNSRecord.parse(wire)
            original = wrong_reply.q.qname
            wrong_name = DNSLabel(("wrong." + str(original)) if str(original) != "." else "wrong.")
            wrong_reply.q.qname = wrong_name
            for rr in wrong_reply.rr:
                if rr.rname == original:
                    rr.rname = wrong_name
            wrong = wrong_reply.pack()
            return (wrong, wire) if rule.then_correct else (wrong,)
        return (wire,)

    # -- authoritative lookup (called with the lock held) --------------------------------------

    def _authoritative_reply(self, query: Any, qname: str, qtype: int, edns: bool, do: bool) -> Any:
        reply = _skeleton(query, rcode=RCODE.NOERROR, edns=edns, do=do, aa=True)
        name = qname
        for _ in range(_MAX_CNAME_CHAIN + 1):
            rrsets = self._lookup(name)
            if rrsets is None:
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._negative_soa(name))
                return reply
            if qtype == QTYPE.ANY and rrsets:
                for rrset in rrsets.values():
                    reply.add_answer(*(_rr(name, r) for r in rrset))
                return reply
            if rrsets.get(qtype):
                reply.add_answer(*(_rr(name, r) for r in rrsets[qtype]))
                return reply
            cnames = rrsets.get(QTYPE.CNAME)
            if cnames and qtype != QTYPE.CNAME:
                reply.add_answer(_rr(name, cnames[0]))
                name = _normalize(str(cnames[0].rdata.label))
                continue
            reply.add_auth(self._negative_soa(name))  # NODATA
            return reply
        return _skeleton(query, rcode=RCODE.SERVFAIL, edns=edns, do=do)  # CNAME loop

    def _exists(self, name: str) -> bool:
        if name in self._records or name == "":
            return True
        suffix = "." + name
        return any(key.endswith(suffix) for key in self._records)

    def _lookup(self, name: str) -> dict[int, list[_Record]] | None:
        """The RRsets at ``name`` (wildcards applied); {} for an empty non-terminal; None if the
        name does not exist."""
        found = self._records.get(name)
        if found:
            return found
        if self._exists(name):
            return {}
        labels = name.split(".") if name else []
        for i in range(1, len(labels) + 1):
            encloser = ".".join(labels[i:])
            wildcard = self._records.get(f"*.{encloser}" if encloser else "*")
            if wildcard:
                return wildcard
            if self._exists(encloser):
                return None
        return None

    def _negative_soa(self, name: str) -> Any:
        zone = max(
            (z for z in self._zones if z == "" or name == z or name.endswith("." + z)),
            key=len,
            default=None,
        )
        if zone is not None and self._records.get(zone, {}).get(QTYPE.SOA):
            return _rr(zone, self._records[zone][QTYPE.SOA][0])
        soa = f"a.root.invalid. hostmaster.invalid. 1 1800 900 604800 {self._default_negative_ttl}"
        return RR.fromZone(f". 300 IN SOA {soa}")[0]


def _rr(name: str, record: _Record) -> Any:
    return RR(f"{name}." if name else ".", record.rtype, ttl=record.ttl, rdata=record.rdata)


def _skeleton(
    query: Any, *, rcode: int, edns: bool, do: bool, tc: bool = False, aa: bool = False
) -> Any:
    """A reply with the query's ID, flags and question, ``rcode`` and no records (but OPT)."""
    header = DNSHeader(
        id=query.header.id,
        bitmap=query.header.bitmap,
        qr=1,
        aa=int(aa),
        ra=1,
        tc=int(tc),
        z=0,
        ad=0,
        rcode=rcode,
    )
    reply = DNSRecord(header, q=query.q)
    if edns:
        reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD, flags="do" if do else ""))
    return reply


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, upstream: ScriptedUpstream) -> None:
        self._upstream = upstream
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        transport = self._transport
        if transport is None:
            return
        src = (str(addr[0]), int(addr[1]))

        def send(wire: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(wire, addr)

        self._upstream._dispatch(data, "udp", src, send)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable after the client went away


class _TcpProtocol(asyncio.Protocol):
    """RFC 7766 framing: 2-byte length prefix, any number of queries per connection."""

    def __init__(self, upstream: ScriptedUpstream) -> None:
        self._upstream = upstream
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self._peer = (str(peer[0]), int(peer[1]))
        if self._upstream._closing:
            self._transport.abort()
            return
        self._upstream._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._upstream._connections.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _send(self, wire: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(len(wire).to_bytes(2, "big") + wire)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                break
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            self._upstream._dispatch(message, "tcp", self._peer, self._send)
