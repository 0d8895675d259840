"""ListRefresher: downloads when due, on_change only on a real change, back-off on failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dnsfilter.config import Config, HostPort, parse_config
from dnsfilter.datapath.policy import Action
from dnsfilter.lists.catalog import load_lists
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.refresh import ListRefresher
from dnsfilter.lists.sources import HostResolver, ListSource
from dnsfilter.observe.metrics import Metrics
from dnsfilter.operate.app import Service
from tests.fakes import ScriptedUpstream
from tests.unit.lists.test_sources import LIST_HOST, NEW_BODY, Clock, ListServer

pytestmark = pytest.mark.asyncio


@pytest.fixture
def list_server() -> Iterator[ListServer]:
    with ListServer() as server:
        yield server


@pytest.fixture
def resolver(scripted_upstream: ScriptedUpstream) -> HostResolver:
    scripted_upstream.add(LIST_HOST, "A", "127.0.0.1")
    return HostResolver([HostPort("127.0.0.1", scripted_upstream.port)], timeout=5.0)


class Reloads:
    """on_change for tests: counts the awaits, optionally failing."""

    def __init__(self, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail
        self.changed = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.changed.set()
        if self.fail:
            raise RuntimeError("reload exploded")


def _source(
    server: ListServer, resolver: HostResolver, cache: Path, clock: Clock, path: str = "/a.hosts"
) -> ListSource:
    return ListSource(
        path.strip("/").split(".")[0],
        server.url(path),
        refresh=3600,
        cache_dir=cache,
        resolver=resolver,
        clock=clock,
        timeout=10.0,
    )


async def test_downloads_only_when_due_and_reloads_only_on_change(
    list_server: ListServer, resolver: HostResolver, tmp_path: Path
) -> None:
    clock = Clock()
    source = _source(list_server, resolver, tmp_path, clock)
    source.load()  # what `serve` does at start
    reloads = Reloads()
    refresher = ListRefresher([source], reloads, clock=clock)

    assert await refresher.run_once() is False
    assert len(list_server.requests) == 1, "not due yet: no request"
    assert refresher.due_at(source) == clock.now + 3600

    clock.now += 3600
    assert await refresher.run_once() is False  # 304
    assert list_server.requests[-1].if_none_match == list_server.etag
    assert reloads.count == 0

    clock.now += 3600
    list_server.set_body(NEW_BODY)
    assert await refresher.run_once() is True
    assert reloads.count == 1
    assert [e.domain for e in source.read_cached().domains] == ["banned.example", "new.example"]
    assert len(list_server.requests) == 3


async def test_sources_changed_together_reload_once(
    list_server: ListServer, resolver: HostResolver, tmp_path: Path
) -> None:
    clock = Clock()
    sources = [_source(list_server, resolver, tmp_path, clock, p) for p in ("/a.txt", "/b.txt")]
    reloads = Reloads()
    refresher = ListRefresher(sources, reloads, clock=clock)
    assert await refresher.run_once() is True  # never downloaded: due at once
    assert reloads.count == 1
    assert sorted(r.path for r in list_server.requests) == ["/a.txt", "/b.txt"]


async def test_failure_backs_off_and_keeps_the_copy(
    list_server: ListServer,
    resolver: HostResolver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    source = _source(list_server, resolver, tmp_path, clock)
    source.load()
    reloads = Reloads()
    refresher = ListRefresher([source], reloads, retry_after=60, clock=clock)
    list_server.mode = "500"
    clock.now += 3600
    with caplog.at_level(logging.WARNING, logger="dnsfilter.lists.refresh"):
        assert await refresher.run_once() is False
    assert "refresh failed (HTTP 500 Broken); keeping the last good copy" in caplog.text
    assert refresher.due_at(source) == clock.now + 60
    clock.now += 60
    await refresher.run_once()
    assert refresher.due_at(source) == clock.now + 120, "the retry delay doubles"
    assert reloads.count == 0
    assert [e.domain for e in source.read_cached().domains] == ["banned.example", "tracker.example"]

    list_server.mode = "ok"
    list_server.set_body(NEW_BODY)
    clock.now += 120
    assert await refresher.run_once() is True
    assert refresher.due_at(source) == clock.now + 3600, "success resets the back-off"


async def test_a_failing_reload_does_not_stop_the_refresher(
    list_server: ListServer, resolver: HostResolver, tmp_path: Path
) -> None:
    clock = Clock()
    reloads = Reloads(fail=True)
    refresher = ListRefresher(
        [_source(list_server, resolver, tmp_path, clock)], reloads, clock=clock
    )
    assert await refresher.run_once() is True
    assert reloads.count == 1


async def test_file_sources_are_ignored(tmp_path: Path) -> None:
    refresher = ListRefresher([ListSource("local", str(tmp_path / "x.txt"))], Reloads())
    assert refresher.sources() == []
    assert await refresher.run_once() is False


async def test_runs_in_the_background_until_stopped(
    list_server: ListServer, resolver: HostResolver, tmp_path: Path
) -> None:
    # Real time: refresh every 0.2 s, with sources read again each round.
    source = ListSource(
        "a", list_server.url(), refresh=1, cache_dir=tmp_path, resolver=resolver, timeout=10.0
    )
    source.refresh = 0  # below the config minimum on purpose: the test must not wait
    source.load()
    reloads = Reloads()
    refresher = ListRefresher(lambda: [source], reloads, max_sleep=0.05)
    assert len(list_server.requests) == 1  # load() downloaded it once
    refresher.start()
    try:
        # Two rounds in the background, each a conditional GET answered 304.
        await _until(lambda: refresher.rounds >= 2 and len(list_server.requests) >= 3)
        assert reloads.count == 0, "304s are no change"
        assert {r.if_none_match for r in list_server.requests[1:]} == {list_server.etag}
        list_server.set_body(NEW_BODY)
        await asyncio.wait_for(reloads.changed.wait(), 5)
        assert _refresher_tasks() == 1
    finally:
        await refresher.stop()
    assert reloads.count == 1
    assert _refresher_tasks() == 0, "stopped"


def _refresher_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == "list-refresher")


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll condition until it holds; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the condition"
        await asyncio.sleep(0.01)


async def test_service_reloads_when_a_url_list_changes(
    list_server: ListServer,
    scripted_upstream: ScriptedUpstream,
    resolver: HostResolver,
    tmp_path: Path,
) -> None:
    """The wiring in app.Service: a changed download reaches the policy without a restart."""
    config = parse_config(
        f"""\
server: {{listen: ["127.0.0.1:0"]}}
upstream: {{servers: ["{scripted_upstream.address}"], health_check_interval: 0}}
metrics: {{enabled: false}}
reload: {{watch_files: false}}
networks: {{lan: ["127.0.0.0/8"]}}
policies: {{p: {{networks: [lan], lists: [feed]}}}}
lists: {{feed: {{url: "{list_server.url()}", refresh: 60}}}}
""",
        "cfg.yaml",
        tmp_path,
    )
    # Below the config's minimum of 60 s, so the test does not wait a minute.
    feed = replace(config.lists[0], refresh=1, cache_dir=str(tmp_path / "cache"))
    config = replace(config, lists=(feed,))

    def load() -> tuple[Config, list[BlockList]]:
        return config, load_lists(config.lists, tmp_path, resolver)

    service = Service(*load(), Metrics(), loader=load)
    blocked = service.resolver.policy.decide
    assert blocked("127.0.0.1", "tracker.example").action is Action.BLOCK
    assert blocked("127.0.0.1", "new.example").action is Action.ALLOW
    task = asyncio.get_running_loop().create_task(service.run())
    try:
        list_server.set_body(NEW_BODY)
        for _ in range(100):
            if service.reloads:
                break
            await asyncio.sleep(0.05)
        assert service.reloads == 1
        decide = service.resolver.policy.decide
        assert decide("127.0.0.1", "new.example").action is Action.BLOCK
        assert decide("127.0.0.1", "tracker.example").action is Action.ALLOW
    finally:
        service.stop()
        assert await asyncio.wait_for(task, 5) == 0
