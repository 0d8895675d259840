"""Where a list comes from: a local file, or an HTTP(S) URL kept in an on-disk cache.

A URL list is downloaded with a conditional GET (If-None-Match / If-Modified-Since from the
last good copy's ETag and Last-Modified), checked by parsing it, and only then written
(atomically) over the last good copy, beside a small JSON file of validators. A failed
download, an error status, a body that does not parse, or a start with no network leaves
the last good copy in use.

Downloads never ask the system resolver, which on a filtering host is dnsfilter itself (and
may not be running yet): `HostResolver` sends its own query to the configured upstream
servers, and the connection goes to that address while the Host header, TLS SNI and
certificate check keep the URL's hostname.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeAlias
from urllib.parse import SplitResult, urljoin, urlsplit

from dnsfilter import __version__
from dnsfilter.errors import DnsFilterError, FormatError, ListError
from dnsfilter.lists.formats import parse_list
from dnsfilter.lists.location import DEFAULT_REFRESH, is_url
from dnsfilter.lists.model import BlockList
from dnsfilter.names import suffixes
from dnsfilter.wire import HEADER_LEN, QType, Rcode, make_query, same_question, scan_response

if TYPE_CHECKING:
    from dnsfilter.config import Config, HostPort, UpstreamServer

    #: a plain DNS server, or a DNS-over-TLS one (asked over TLS, never in the clear)
    Nameserver: TypeAlias = HostPort | UpstreamServer

log = logging.getLogger(__name__)

#: Largest list body accepted, in bytes (a million-line hosts file is about 30 MB).
MAX_BYTES = 256 * 1024 * 1024
#: Seconds any one network operation (DNS try, connect, read) may take.
DEFAULT_TIMEOUT = 30.0
# A trickling server could keep a download alive forever one byte at a time.
_TOTAL_TIME_FACTOR = 10
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"dnsfilter/{__version__}"
_DNS_TIMEOUT = 2.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadError(DnsFilterError):
    """A list could not be downloaded, or what came back is not a usable list."""


def default_cache_dir() -> Path:
    """$CACHE_DIRECTORY/lists (systemd's CacheDirectory=), else the user's cache directory."""
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0]) / "lists"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "dnsfilter" / "lists"


# ---------------------------------------------------------------------------------------
# Resolving the list server's name without the system resolver


class HostResolver:
    """A/AAAA lookups sent straight to upstream servers over blocking sockets.

    Made for worker threads: each lookup uses a fresh socket and a random ID, and accepts
    only a reply with that ID and question from the server it asked (as upstream.py does).
    """

    def __init__(
        self,
        servers: Sequence[Nameserver],
        zones: Mapping[str, Sequence[Nameserver]] | None = None,
        timeout: float = _DNS_TIMEOUT,
    ) -> None:
        self.servers = tuple(servers)
        self.zones = dict(zones or {})
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config) -> HostResolver:
        """The servers the resolver forwards to: upstream.servers, else resolv.conf's."""
        from dnsfilter.config import read_resolv_conf  # config imports this package

        up = config.upstream
        servers: tuple[Nameserver, ...] = tuple(s if s.tls else s.address for s in up.servers)
        if not servers:
            try:
                found = read_resolv_conf(up.resolv_conf)
            except OSError:
                found = ()
            # Asking ourselves would wait on a resolver that may not be up yet.
            servers = tuple(s for s in found if s not in config.server.listen)
        zones = {
            z.zone: tuple(s if s.tls else s.address for s in z.servers)
            for z in config.forward_zones
        }
        return cls(servers, zones, min(up.timeout, _DNS_TIMEOUT))

    def resolve(self, host: str) -> list[str]:
        """The host's addresses, A records first, AAAA only when there are none."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        servers = self._servers_for(host.lower().rstrip("."))
        if not servers:
            raise DownloadError(f"no upstream server to resolve {host} with")
        problems: list[str] = []
        for qtype in (QType.A, QType.AAAA):
            for server in servers:
                label = getattr(server, "name", server)  # tls://ADDR:PORT for DoT servers
                try:
                    addresses = self._ask(server, host, qtype)
                except _NoSuchName:
                    raise DownloadError(f"{host}: no such name (NXDOMAIN from {label})") from None
                except (OSError, FormatError, _BadAnswer) as exc:
                    problems.append(f"{label}: {exc}")
                    continue
                if addresses:
                    return addresses
                break  # NOERROR without records: the next type, not the next server
        detail = "; ".join(problems) if problems else "no A or AAAA records"
        raise DownloadError(f"cannot resolve {host}: {detail}")

    def _servers_for(self, host: str) -> tuple[Nameserver, ...]:
        for suffix in suffixes(host):
            zone = self.zones.get(suffix)
            if zone:
                return tuple(zone)
        return self.servers

    def _ask(self, server: Nameserver, host: str, qtype: QType) -> list[str]:
        from dnsfilter.config import UpstreamServer  # config imports this package

        query = make_query(host, qtype, msg_id=secrets.randbits(16))
        question = query[HEADER_LEN:]
        if isinstance(server, UpstreamServer):
            data = _tls_exchange(server, query, question, self.timeout)
        else:
            data = _udp_exchange(server, query, question, self.timeout)
            if data[2] & 0x02:  # TC: the answer did not fit in 512 bytes
                data = _tcp_exchange(server, query, question, self.timeout)
        scan = scan_response(data)
        if scan.rcode == Rcode.NXDOMAIN:
            raise _NoSuchName
        if scan.rcode != Rcode.NOERROR:
            raise _BadAnswer(f"rcode {scan.rcode}")
        size = 4 if qtype == QType.A else 16
        return [
            str(ipaddress.ip_address(data[r.rdata_start : r.end]))
            for r in scan.records
            if r.section == 1 and r.rtype == qtype and r.end - r.rdata_start == size
        ]


class _NoSuchName(Exception):
    pass


class _BadAnswer(Exception):
    pass


def _udp_exchange(server: HostPort, query: bytes, question: bytes, timeout: float) -> bytes:
    family = socket.AF_INET6 if server.family_v6 else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # connect(): the kernel drops datagrams from any other address or port.
        sock.connect((server.host, server.port))
        sock.send(query)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer in {timeout:g}s")
            sock.settimeout(remaining)
            data = sock.recv(65535)
            if _matches(data, query, question):
                return data


def _tcp_exchange(server: HostPort, query: bytes, question: bytes, timeout: float) -> bytes:
    with socket.create_connection((server.host, server.port), timeout) as sock:
        return _read_stream_answer(sock, query, question)


def _read_stream_answer(sock: socket.socket, query: bytes, question: bytes) -> bytes:
    sock.sendall(len(query).to_bytes(2, "big") + query)
    with sock.makefile("rb") as stream:
        while True:
            head = stream.read(2)
            if len(head) < 2:
                raise _BadAnswer("connection closed")
            data = stream.read(int.from_bytes(head, "big"))
            if _matches(data, query, question):
                return data


def _tls_exchange(server: UpstreamServer, query: bytes, question: bytes, timeout: float) -> bytes:
    """One query over a new DNS-over-TLS connection, verified as the resolver verifies it."""
    from dnsfilter.upstream import tls_context

    try:
        context = tls_context(server)
    except DnsFilterError as exc:  # an unreadable ca_file: serve reports it at start
        raise _BadAnswer(str(exc)) from None
    address = server.address
    with (
        socket.create_connection((address.host, address.port), timeout) as raw,
        context.wrap_socket(raw, server_hostname=server.tls_name or address.host) as sock,
    ):
        return _read_stream_answer(sock, query, question)


def _matches(data: bytes, query: bytes, question: bytes) -> bool:
    if len(data) < HEADER_LEN or data[:2] != query[:2]:
        return False
    try:
        scan = scan_response(data)
    except FormatError:
        return False
    return same_question(data[HEADER_LEN : scan.question_end], question)


# ---------------------------------------------------------------------------------------
# HTTP(S) to an address we resolved ourselves


class _HttpConnection(http.client.HTTPConnection):
    """HTTP to a given address; the Host header still names the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _HttpsConnection(http.client.HTTPSConnection):
    """HTTPS to a given address; SNI and the certificate check use the URL's host."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _Response(NamedTuple):
    status: int
    reason: str
    etag: str
    last_modified: str
    body: bytes


@dataclass(frozen=True, slots=True)
class CacheMeta:
    """What the cache remembers of the last good download (the JSON beside the body)."""

    url: str
    etag: str = ""
    last_modified: str = ""
    fetched_at: float = 0.0  #: wall-clock time of the last 200 or 304
    sha256: str = ""
    size: int = 0


# ---------------------------------------------------------------------------------------
# A list's source


class ListSource:
    """One configured list: a local file, or a URL with its cached last good copy."""

    def __init__(
        self,
        name: str,
        location: str,
        *,
        format: str | None = None,
        refresh: int = DEFAULT_REFRESH,
        cache_dir: Path | None = None,
        ca_file: str | None = None,
        resolver: HostResolver | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.location = location
        self.format = format
        self.refresh = refresh
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.ca_file = ca_file
        self.resolver = resolver if resolver is not None else HostResolver(())
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        digest = hashlib.sha256(location.encode()).hexdigest()[:16]
        # Keyed by URL too: pointing a list at another URL must not reuse the old copy.
        self.body_path = self.cache_dir / f"{name}-{digest}.list"
        self.meta_path = self.cache_dir / f"{name}-{digest}.json"

    def __repr__(self) -> str:
        return f"ListSource({self.name!r}, {self.location!r})"

    @property
    def is_url(self) -> bool:
        return is_url(self.location)

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> BlockList:
        """The list now: the file, or for a URL the cached copy, downloaded first if stale.

        A failed download falls back to the last good copy; without one, ListError.
        """
        if not self.is_url:
            return self._parse(read_text(Path(self.location)), self.location)
        meta = self.meta()
        cached = self.body_path.is_file()
        # A copy from the future (the clock was set back) counts as stale, not fresh forever.
        if cached and meta is not None and 0 <= self.clock() - meta.fetched_at < self.refresh:
            with contextlib.suppress(ListError):  # a copy our parser now rejects: download
                return self.read_cached()
        try:
            fresh = self.fetch()
        except DownloadError as exc:
            if not cached:
                raise ListError(
                    [f"{self.location}: {exc}; no last good copy in {self.cache_dir}"]
                ) from None
            log.warning(
                "list %s: %s: %s; using the last good copy (%s)",
                self.name,
                self.location,
                exc,
                _age(meta),
            )
            return self.read_cached()
        return fresh if fresh is not None else self.read_cached()

    def read_cached(self) -> BlockList:
        """The last good copy of a URL list (ListError when there is none or it is bad)."""
        label = f"{self.body_path} (the last good copy of {self.location})"
        return self._parse(read_text(self.body_path, label), self.location)

    def meta(self) -> CacheMeta | None:
        """The cached copy's validators, or None when there is no usable metadata."""
        try:
            data = json.loads(self.meta_path.read_text(encoding="utf-8"))
            meta = CacheMeta(**data)
        except (OSError, ValueError, TypeError):
            return None
        return meta if meta.url == self.location else None

    def next_due(self) -> float:
        """Wall-clock time of the next download: refresh seconds after the last one."""
        meta = self.meta()
        return meta.fetched_at + self.refresh if meta is not None else self.clock()

    def _parse(self, text: str, filename: str) -> BlockList:
        return parse_list(text, filename, self.name, self.format)

    # -- downloading -----------------------------------------------------------------------

    def fetch(self) -> BlockList | None:
        """Download once: the new list when the content changed, None when it did not.

        Raises DownloadError (and keeps the cache as it was) on any failure.
        """
        meta = self.meta()
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        conditional = meta is not None and self.body_path.is_file()
        if conditional and meta is not None:
            if meta.etag:
                headers["If-None-Match"] = meta.etag
            if meta.last_modified:
                headers["If-Modified-Since"] = meta.last_modified
        response = self._get(headers)
        now = self.clock()
        if response.status == 304 and conditional and meta is not None:
            log.debug("list %s: not modified", self.name)
            self._write_meta(replace(meta, fetched_at=now))
            return None
        if response.status != 200:
            raise DownloadError(f"HTTP {response.status} {response.reason}".rstrip())
        try:
            text = response.body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DownloadError(f"the download is not UTF-8 text: {exc.reason}") from None
        try:
            blocklist = self._parse(text, self.location)
        except ListError as exc:
            more = len(exc.problems) - 1
            extra = f" (and {more} more problems)" if more else ""
            raise DownloadError(
                f"the download is not a valid list: {exc.problems[0]}{extra}"
            ) from None
        if not blocklist.domains and not blocklist.exceptions:
            # An error page or a truncated file more often than a list emptied on purpose.
            raise DownloadError("the download holds no entries")
        digest = hashlib.sha256(response.body).hexdigest()
        changed = not conditional or meta is None or meta.sha256 != digest
        if changed:
            self._write(self.body_path, response.body)
        self._write_meta(
            CacheMeta(
                self.location,
                response.etag,
                response.last_modified,
                now,
                digest,
                len(response.body),
            )
        )
        log.info(
            "list %s: downloaded %d bytes, %d entries%s",
            self.name,
            len(response.body),
            len(blocklist.domains),
            "" if changed else " (unchanged)",
        )
        return blocklist if changed else None

    def _get(self, headers: dict[str, str]) -> _Response:
        url = self.location
        deadline = time.monotonic() + self.timeout * _TOTAL_TIME_FACTOR
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection = self._connect(parts)
            try:
                connection.request("GET", target, headers=headers)
                # Closed on every path: with HTTP/1.0 the reply, not the connection, owns
                # the socket, and a body left unread would leave it open.
                with connection.getresponse() as reply:
                    if reply.status in _REDIRECTS and reply.getheader("Location"):
                        following = urljoin(url, reply.getheader("Location", ""))
                        if not is_url(following):
                            raise DownloadError(f"redirect to {following!r}, not http(s)")
                        if url.startswith("https:") and not following.startswith("https:"):
                            raise DownloadError(f"refusing the redirect from https to {following}")
                        url = following
                        continue
                    body = self._read_body(reply, deadline) if reply.status == 200 else b""
                    return _Response(
                        reply.status,
                        reply.reason,
                        reply.getheader("ETag", ""),
                        reply.getheader("Last-Modified", ""),
                        body,
                    )
            except (OSError, http.client.HTTPException) as exc:
                after = f" (redirected to {url})" if url != self.location else ""
                raise DownloadError(_describe(exc) + after) from None
            finally:
                connection.close()
        raise DownloadError(f"more than {_MAX_REDIRECTS} redirects")

    def _connect(self, parts: SplitResult) -> http.client.HTTPConnection:
        host = parts.hostname or ""
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise DownloadError(f"bad port in {parts.geturl()}: {exc}") from None
        problems = []
        for address in self.resolver.resolve(host):
            connection: http.client.HTTPConnection
            if parts.scheme == "https":
                connection = _HttpsConnection(host, port, address, self.timeout, self._tls())
            else:
                connection = _HttpConnection(host, port, address, self.timeout)
            try:
                connection.connect()
            except OSError as exc:
                connection.close()
                problems.append(f"{address}: {_describe(exc)}")
                continue
            return connection
        raise DownloadError(f"cannot connect to {host} port {port} ({'; '.join(problems)})")

    def _tls(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise DownloadError(f"ca_file {self.ca_file}: {_describe(exc)}") from None

    def _read_body(self, reply: http.client.HTTPResponse, deadline: float) -> bytes:
        length = reply.getheader("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise DownloadError(f"{length} bytes is more than the limit of {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                limit = self.timeout * _TOTAL_TIME_FACTOR
                raise DownloadError(f"the download took longer than {limit:g}s")
            chunk = reply.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise DownloadError(f"the body is larger than the limit of {self.max_bytes} bytes")
            chunks.append(chunk)

    # -- the cache -------------------------------------------------------------------------

    def _write_meta(self, meta: CacheMeta) -> None:
        self._write(self.meta_path, json.dumps(asdict(meta), indent=1).encode())

    def _write(self, path: Path, data: bytes) -> None:
        """Replace path atomically: a crash leaves the old file or the new one, never half."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.cache_dir)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise DownloadError(f"cannot write the cache {path}: {_describe(exc)}") from None


def read_text(path: Path, label: str | None = None) -> str:
    """A list file's text (UTF-8, a leading BOM dropped); ListError naming label or path."""
    name = label or str(path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ListError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ListError([f"{name}: not UTF-8 text: {exc.reason}"]) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _age(meta: CacheMeta | None) -> str:
    if meta is None or not meta.fetched_at:
        return "fetched at an unknown time"
    return "fetched " + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(meta.fetched_at))
