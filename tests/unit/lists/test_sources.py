"""URL lists against a real HTTP(S) server on loopback: conditional GET, the last good copy,
name resolution through the configured upstream (a ScriptedUpstream), TLS verification.

``ListServer`` is also used by the integration tests.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from dnsfilter.config import HostPort, ListConfig, UpstreamConfig, UpstreamServer, parse_config
from dnsfilter.errors import ListError
from dnsfilter.lists.catalog import list_sources, load_lists
from dnsfilter.lists.sources import (
    CacheMeta,
    DownloadError,
    HostResolver,
    ListSource,
    default_cache_dir,
)
from tests.fakes import ScriptedUpstream

LIST_HOST = "lists.example.test"
HOSTS_BODY = b"# test list\n0.0.0.0 banned.example\n0.0.0.0 tracker.example\n"
NEW_BODY = b"0.0.0.0 banned.example\n0.0.0.0 new.example\n"


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    host: str
    if_none_match: str | None
    if_modified_since: str | None


class ListServer:
    """http.server on loopback serving one list body at any path, with ETag and Last-Modified.

    ``mode``: "ok" (conditional GET honoured), "no-validators" (no ETag or Last-Modified,
    conditionals ignored), "500", "garbage", "empty", "hang" (no reply until the test ends),
    "redirect" (302 to /moved/<path>). Every request is recorded in ``requests``.
    """

    def __init__(
        self, body: bytes = HOSTS_BODY, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.mode = "ok"
        self.requests: list[Request] = []
        self.server_names: list[str | None] = []
        self._release = threading.Event()
        self.set_body(body)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(
                    Request(
                        self.path,
                        self.headers.get("Host", ""),
                        self.headers.get("If-None-Match"),
                        self.headers.get("If-Modified-Since"),
                    )
                )
                server.respond(self)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        class Server(ThreadingHTTPServer):
            address_family = __import__("socket").AF_INET6 if ":" in host else 2
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        if tls is not None:
            tls.sni_callback = self._sni
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _sni(self, sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        del sock, context
        self.server_names.append(name)

    def url(self, path: str = "/block.hosts", scheme: str = "http", host: str = LIST_HOST) -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:12] + '"'
        self.last_modified = email.utils.formatdate(time.time(), usegmt=True)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        mode = self.mode
        if mode == "hang":
            self._release.wait(10)
            return
        if mode == "500":
            handler.send_error(500, "Broken")
            return
        if mode == "redirect" and not handler.path.startswith("/moved/"):
            handler.send_response(302)
            handler.send_header("Location", "/moved" + handler.path)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        body = {"garbage": b"<html><body>Service Unavailable</body></html>\n", "empty": b""}.get(
            mode, self.body
        )
        if mode in ("ok", "redirect"):
            inm = handler.headers.get("If-None-Match")
            ims = handler.headers.get("If-Modified-Since")
            if inm == self.etag or (inm is None and ims == self.last_modified):
                handler.send_response(304)
                handler.end_headers()
                return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        if mode in ("ok", "redirect"):
            handler.send_header("ETag", self.etag)
            handler.send_header("Last-Modified", self.last_modified)
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Clock:
    """Wall-clock time that tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def list_server() -> Iterator[ListServer]:
    with ListServer() as server:
        yield server


@pytest.fixture
def upstream(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    """The configured upstream, which alone knows where the list server is."""
    return scripted_upstream.add(LIST_HOST, "A", "127.0.0.1")


def _resolver(upstream: ScriptedUpstream) -> HostResolver:
    return HostResolver([HostPort("127.0.0.1", upstream.port)], timeout=5.0)


def _source(
    server: ListServer, upstream: ScriptedUpstream, cache: Path, clock: Clock, **options: object
) -> ListSource:
    return ListSource(
        "ads",
        str(options.pop("url", server.url())),
        cache_dir=cache,
        resolver=_resolver(upstream),
        clock=clock,
        timeout=float(str(options.pop("timeout", 10.0))),
        **options,  # type: ignore[arg-type]
    )


def _domains(blocklist: object) -> list[str]:
    return [entry.domain for entry in getattr(blocklist, "domains", ())]


# ---------------------------------------------------------------------------------------
# Download, conditional GET, cache


def test_download_then_conditional_get(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    clock = Clock()
    source = _source(list_server, upstream, tmp_path, clock)
    first = source.fetch()
    assert _domains(first) == ["banned.example", "tracker.example"]
    assert source.body_path.read_bytes() == HOSTS_BODY
    meta = json.loads(source.meta_path.read_text())
    assert meta == {
        "url": list_server.url(),
        "etag": list_server.etag,
        "last_modified": list_server.last_modified,
        "fetched_at": clock.now,
        "sha256": hashlib.sha256(HOSTS_BODY).hexdigest(),
        "size": len(HOSTS_BODY),
    }
    # The Host header names the URL's host, although we connected to an address.
    assert list_server.requests[0] == Request(
        "/block.hosts", f"{LIST_HOST}:{list_server.port}", None, None
    )

    clock.now += 100
    assert source.fetch() is None  # 304: no change
    assert list_server.requests[1].if_none_match == list_server.etag
    assert list_server.requests[1].if_modified_since == list_server.last_modified
    assert json.loads(source.meta_path.read_text())["fetched_at"] == clock.now

    list_server.set_body(NEW_BODY)
    assert _domains(source.fetch()) == ["banned.example", "new.example"]
    assert source.body_path.read_bytes() == NEW_BODY
    assert len(list_server.requests) == 3


def test_identical_body_without_validators_is_no_change(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    list_server.mode = "no-validators"
    source = _source(list_server, upstream, tmp_path, Clock())
    assert source.fetch() is not None
    assert source.fetch() is None
    assert [(r.if_none_match, r.if_modified_since) for r in list_server.requests] == [
        (None, None),
        (None, None),
    ]
    list_server.set_body(NEW_BODY)
    assert _domains(source.fetch()) == ["banned.example", "new.example"]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        pytest.param("500", "HTTP 500 Broken", id="server-error"),
        pytest.param(
            "garbage",
            "the download is not a valid list: http://",
            id="garbage",
        ),
        pytest.param("empty", "the download holds no entries", id="empty"),
        pytest.param("hang", "timed out", id="hang"),
    ],
)
def test_a_failed_refresh_keeps_the_last_good_copy(
    list_server: ListServer,
    upstream: ScriptedUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    message: str,
) -> None:
    clock = Clock()
    source = _source(list_server, upstream, tmp_path, clock, timeout=0.5 if mode == "hang" else 10)
    assert source.fetch() is not None
    meta_before = source.meta_path.read_bytes()

    list_server.mode = mode
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        source.fetch()
    assert message in str(info.value)
    assert time.monotonic() - started < 5
    assert source.body_path.read_bytes() == HOSTS_BODY
    assert source.meta_path.read_bytes() == meta_before

    # Stale, so load() tries the server, fails, and falls back to the last good copy.
    clock.now += source.refresh + 1
    with caplog.at_level(logging.WARNING, logger="dnsfilter.lists.sources"):
        assert _domains(source.load()) == ["banned.example", "tracker.example"]
    assert any("using the last good copy" in r.getMessage() for r in caplog.records)


def test_garbage_names_the_line_it_failed_on(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    list_server.mode = "garbage"
    source = _source(list_server, upstream, tmp_path, Clock())
    with pytest.raises(DownloadError) as info:
        source.fetch()
    assert str(info.value) == (
        f"the download is not a valid list: {list_server.url()}:1: '<html><body>Service' "
        "is not an IP address (a hosts line is ADDRESS NAME...)"
    )
    assert not source.body_path.exists()


def test_restart_without_network_uses_the_last_good_copy(
    upstream: ScriptedUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with ListServer() as server:
        url = server.url()
        assert _source(server, upstream, tmp_path, clock).load() is not None
        requests = len(server.requests)
        # A restart within the refresh interval does not even ask.
        again = _source(server, upstream, tmp_path, clock)
        assert _domains(again.load()) == ["banned.example", "tracker.example"]
        assert len(server.requests) == requests
    # The server is gone and the copy is stale: a new process still gets the list.
    clock.now += 86400 * 3
    restarted = _source(server, upstream, tmp_path, clock, url=url)
    with caplog.at_level(logging.WARNING, logger="dnsfilter.lists.sources"):
        assert _domains(restarted.load()) == ["banned.example", "tracker.example"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"list ads: {url}: cannot connect to {LIST_HOST}")
    assert "using the last good copy (fetched " in warning


def test_no_copy_and_no_download_is_an_error(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    with ListServer() as server:
        url = server.url()
    source = _source(server, upstream, tmp_path / "cache", Clock(), url=url)
    with pytest.raises(ListError) as info:
        source.load()
    (problem,) = info.value.problems
    assert problem.startswith(f"{url}: cannot connect to {LIST_HOST} port ")
    assert problem.endswith(f"; no last good copy in {tmp_path / 'cache'}")


def test_a_copy_of_another_url_is_not_used(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    clock = Clock()
    assert _source(list_server, upstream, tmp_path, clock).fetch() is not None
    other = _source(list_server, upstream, tmp_path, clock, url=list_server.url("/other.hosts"))
    assert other.meta() is None
    assert other.fetch() is not None
    assert list_server.requests[-1] == Request(
        "/other.hosts", f"{LIST_HOST}:{list_server.port}", None, None
    )


def test_redirects_are_followed(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    list_server.mode = "redirect"
    source = _source(list_server, upstream, tmp_path, Clock())
    assert _domains(source.fetch()) == ["banned.example", "tracker.example"]
    assert [r.path for r in list_server.requests] == ["/block.hosts", "/moved/block.hosts"]


def test_size_cap(list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path) -> None:
    source = _source(list_server, upstream, tmp_path, Clock(), max_bytes=10)
    with pytest.raises(DownloadError) as info:
        source.fetch()
    assert str(info.value) == f"{len(HOSTS_BODY)} bytes is more than the limit of 10"


def test_unwritable_cache_is_a_download_error(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    source = _source(list_server, upstream, blocker / "cache", Clock())
    with pytest.raises(DownloadError) as info:
        source.fetch()
    assert str(info.value).startswith(f"cannot write the cache {blocker / 'cache'}")


def test_format_is_taken_from_the_config_over_detection(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    list_server.set_body(b"banned.example\n")
    source = _source(list_server, upstream, tmp_path, Clock(), format="adblock")
    # As adblock, a bare name is a substring rule: skipped, so the list is empty and refused.
    with pytest.raises(DownloadError, match="holds no entries"):
        source.fetch()


# ---------------------------------------------------------------------------------------
# Resolving the list server's name


def test_the_hostname_is_resolved_through_the_configured_upstream(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    _source(list_server, upstream, tmp_path, Clock()).fetch()
    assert [(c.qname, c.qtype) for c in upstream.calls] == [(LIST_HOST, "A")]


def test_aaaa_when_there_is_no_a(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    upstream.add("v6.example.test", "AAAA", "::1")
    with ListServer(host="::1") as server:
        source = _source(
            server, upstream, tmp_path, Clock(), url=server.url(host="v6.example.test")
        )
        assert source.fetch() is not None
        assert server.requests[0].host == f"v6.example.test:{server.port}"
    assert [(c.qname, c.qtype) for c in upstream.calls] == [
        ("v6.example.test", "A"),
        ("v6.example.test", "AAAA"),
    ]


def test_forward_zones_route_the_lookup(list_server: ListServer, tmp_path: Path) -> None:
    with (
        ScriptedUpstream(zone="example.test") as default,
        ScriptedUpstream(zone="corp.test") as corp,
    ):
        corp.add("lists.corp.test", "A", "127.0.0.1")
        resolver = HostResolver(
            [HostPort("127.0.0.1", default.port)],
            {"corp.test": [HostPort("127.0.0.1", corp.port)]},
            timeout=5.0,
        )
        url = list_server.url(host="lists.corp.test")
        source = ListSource("ads", url, cache_dir=tmp_path, resolver=resolver)
        assert source.fetch() is not None
        assert [c.qname for c in corp.calls] == ["lists.corp.test"]
        assert default.calls == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(
            "nxdomain", "nothing.example.test: no such name (NXDOMAIN from 127.0.0.1:", id="nx"
        ),
        pytest.param("servfail", "cannot resolve nothing.example.test: 127.0.0.1:", id="servfail"),
        pytest.param("drop", "cannot resolve nothing.example.test: 127.0.0.1:", id="timeout"),
    ],
)
def test_resolution_failures(scripted_upstream: ScriptedUpstream, setup: str, message: str) -> None:
    if setup == "servfail":
        scripted_upstream.servfail()
    elif setup == "drop":
        scripted_upstream.drop()
    resolver = HostResolver([HostPort("127.0.0.1", scripted_upstream.port)], timeout=0.3)
    with pytest.raises(DownloadError) as info:
        resolver.resolve("nothing.example.test")
    assert str(info.value).startswith(message)


def test_truncated_answer_is_asked_again_over_tcp(scripted_upstream: ScriptedUpstream) -> None:
    scripted_upstream.large(40, name="big.example.test", qtype="A")
    resolver = HostResolver([HostPort("127.0.0.1", scripted_upstream.port)], timeout=5.0)
    assert len(resolver.resolve("big.example.test")) == 40
    assert [(c.transport, c.qtype) for c in scripted_upstream.calls] == [("udp", "A"), ("tcp", "A")]


def test_address_literals_need_no_lookup() -> None:
    assert HostResolver([]).resolve("127.0.0.1") == ["127.0.0.1"]
    assert HostResolver([]).resolve("::1") == ["::1"]
    with pytest.raises(DownloadError, match=r"no upstream server to resolve x\.example"):
        HostResolver([]).resolve("x.example")


def test_resolver_from_config_skips_our_own_listen_addresses(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.1\nnameserver 192.0.2.53\n")
    config = parse_config(
        f"""\
server: {{listen: ["127.0.0.1:53"]}}
upstream: {{resolv_conf: {resolv_conf}}}
forward_zones: {{corp.test: ["10.0.0.53"]}}
""",
        "cfg.yaml",
        base=None,
    )
    resolver = HostResolver.from_config(config)
    assert resolver.servers == (HostPort("192.0.2.53", 53),)
    assert resolver.zones == {"corp.test": (HostPort("10.0.0.53", 53),)}
    configured = parse_config("upstream: {servers: ['192.0.2.1:5300']}\n", "c", None)
    assert configured.upstream == UpstreamConfig(
        servers=(UpstreamServer(HostPort("192.0.2.1", 5300)),)
    )
    assert HostResolver.from_config(configured).servers == (HostPort("192.0.2.1", 5300),)


# ---------------------------------------------------------------------------------------
# HTTPS


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for lists.example.test only (no IP address in it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={LIST_HOST}", "-addext", f"subjectAltName=DNS:{LIST_HOST}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_server(certificate: tuple[Path, Path]) -> ListServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return ListServer(tls=context)


def test_https_verifies_the_hostname_not_the_address(
    certificate: tuple[Path, Path], upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    with _tls_server(certificate) as server:
        url = server.url(scheme="https")
        source = _source(server, upstream, tmp_path, Clock(), url=url, ca_file=str(certificate[0]))
        assert _domains(source.fetch()) == ["banned.example", "tracker.example"]
        # SNI carried the name; the certificate (DNS:lists.example.test only) matched it.
        assert server.server_names == [LIST_HOST]


def test_https_rejects_an_untrusted_certificate(
    certificate: tuple[Path, Path], upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    with _tls_server(certificate) as server:
        source = _source(server, upstream, tmp_path, Clock(), url=server.url(scheme="https"))
        with pytest.raises(DownloadError, match="certificate verification failed"):
            source.fetch()
        assert server.requests == []


def test_https_rejects_a_certificate_for_another_name(
    certificate: tuple[Path, Path], upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    upstream.add("other.example.test", "A", "127.0.0.1")
    with _tls_server(certificate) as server:
        url = server.url(scheme="https", host="other.example.test")
        source = _source(server, upstream, tmp_path, Clock(), url=url, ca_file=str(certificate[0]))
        with pytest.raises(DownloadError, match="Hostname mismatch"):
            source.fetch()


# ---------------------------------------------------------------------------------------
# From the config to sources


def test_list_sources_from_config_entries_and_pairs(tmp_path: Path) -> None:
    resolver = HostResolver([])
    sources = list_sources(
        [
            ListConfig("local", str(tmp_path / "a.hosts"), format="hosts"),
            ListConfig(
                "remote",
                url="https://lists.example.test/x.txt",
                format="plain",
                refresh=600,
                cache_dir=str(tmp_path / "c"),
                ca_file="/etc/ca.pem",
            ),
            ("pair", "rel.txt"),
            ("pair-url", "http://lists.example.test/y"),
        ],
        tmp_path,
        resolver,
    )
    assert [(s.name, s.location, s.format, s.is_url) for s in sources] == [
        ("local", str(tmp_path / "a.hosts"), "hosts", False),
        ("remote", "https://lists.example.test/x.txt", "plain", True),
        ("pair", str(tmp_path / "rel.txt"), None, False),
        ("pair-url", "http://lists.example.test/y", None, True),
    ]
    remote = sources[1]
    assert (remote.refresh, remote.cache_dir, remote.ca_file) == (
        600,
        tmp_path / "c",
        "/etc/ca.pem",
    )
    assert remote.resolver is resolver
    assert sources[3].cache_dir == default_cache_dir()


def test_load_lists_mixes_files_and_urls(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    (tmp_path / "local.txt").write_text("local.example\n")
    loaded = load_lists(
        [
            ListConfig("local", "local.txt"),
            ListConfig("remote", url=list_server.url(), cache_dir=str(tmp_path / "cache")),
        ],
        tmp_path,
        _resolver(upstream),
    )
    assert [(b.name, _domains(b)) for b in loaded] == [
        ("local", ["local.example"]),
        ("remote", ["banned.example", "tracker.example"]),
    ]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"CACHE_DIRECTORY": "/var/cache/dnsfilter"}, "/var/cache/dnsfilter/lists", id="systemd"
        ),
        pytest.param({"CACHE_DIRECTORY": "/a:/b"}, "/a/lists", id="systemd-several"),
        pytest.param({"XDG_CACHE_HOME": "/xdg"}, "/xdg/dnsfilter/lists", id="xdg"),
        pytest.param({"HOME": "/home/op"}, "/home/op/.cache/dnsfilter/lists", id="home"),
    ],
)
def test_default_cache_dir(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_cache_dir() == Path(expected)


def test_corrupt_metadata_means_no_conditional_get(
    list_server: ListServer, upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    source = _source(list_server, upstream, tmp_path, Clock())
    source.fetch()
    source.meta_path.write_text("{not json")
    assert source.meta() is None
    assert source.fetch() is not None  # a full download; the body is the same but unverified
    assert list_server.requests[-1].if_none_match is None
    assert isinstance(source.meta(), CacheMeta)
