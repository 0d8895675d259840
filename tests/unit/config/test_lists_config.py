"""The config's list entries (file or url, format, refresh, cache_dir, ca_file) and --list."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dnsfilter.config import ListConfig, parse_config, split_list_spec, with_overrides
from dnsfilter.errors import ConfigError

HEAD = """\
networks: {lan: ["10.0.0.0/8"]}
policies:
  p: {networks: [lan], lists: []}
  q: {networks: [], lists: []}
lists:
"""  # the first list entry is on line 6


def _lists(body: str, base: Path | None = None) -> tuple[ListConfig, ...]:
    entries = textwrap.indent(textwrap.dedent(body), "  ")
    return parse_config(HEAD + entries, "cfg.yaml", base).lists


def _problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _lists(body)
    return info.value.problems


def test_file_and_url_entries(tmp_path: Path) -> None:
    lists = _lists(
        """\
          local: {file: ads.hosts, format: hosts}
          remote:
            url: https://lists.example.test/ads.txt
            format: adblock
            refresh: 3600
            cache_dir: cache
            ca_file: /etc/ssl/corp.pem
          bare: {url: "http://192.0.2.1:8080/x"}
        """,
        tmp_path,
    )
    assert lists == (
        ListConfig("local", str(tmp_path / "ads.hosts"), 6, format="hosts"),
        ListConfig(
            "remote",
            line=8,
            url="https://lists.example.test/ads.txt",
            format="adblock",
            refresh=3600,
            cache_dir=str(tmp_path / "cache"),
            ca_file="/etc/ssl/corp.pem",
        ),
        ListConfig("bare", line=13, url="http://192.0.2.1:8080/x"),
    )
    assert lists[2].refresh == 86400
    assert lists[2].format is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "  a: {file: a.txt, url: 'http://x.example/a'}\n",
            ["cfg.yaml:6: lists.a: needs exactly one of 'file' and 'url'"],
            id="both",
        ),
        pytest.param(
            "  a: {format: hosts}\n",
            ["cfg.yaml:6: lists.a: needs exactly one of 'file' and 'url'"],
            id="neither",
        ),
        pytest.param(
            "  a: {file: a.txt, format: csv}\n",
            ["cfg.yaml:6: lists.a.format: must be one of yaml, hosts, plain, adblock, rpz"],
            id="unknown-format",
        ),
        pytest.param(
            "  a: {url: 'http://x.example/a', refresh: 59}\n",
            ["cfg.yaml:6: lists.a.refresh: must be between 60 and 31536000 (got 59)"],
            id="refresh-too-short",
        ),
        pytest.param(
            "  a: {url: 'http://x.example/a', refresh: '3600'}\n",
            ["cfg.yaml:6: lists.a.refresh: expected a whole number (got the string '3600')"],
            id="refresh-a-string",
        ),
        pytest.param(
            "  a:\n    file: a.txt\n    refresh: 600\n    cache_dir: /c\n    ca_file: /ca\n",
            [
                "cfg.yaml:8: lists.a.refresh: applies to url lists only",
                "cfg.yaml:9: lists.a.cache_dir: applies to url lists only",
                "cfg.yaml:10: lists.a.ca_file: applies to url lists only",
            ],
            id="url-keys-on-a-file",
        ),
        pytest.param(
            "  a: {url: 'ftp://x.example/a'}\n",
            [
                "cfg.yaml:6: lists.a.url: expected an http:// or https:// URL with a host "
                "(got 'ftp://x.example/a')"
            ],
            id="ftp",
        ),
        pytest.param(
            "  a: {url: 'https:///nohost'}\n",
            [
                "cfg.yaml:6: lists.a.url: expected an http:// or https:// URL with a host "
                "(got 'https:///nohost')"
            ],
            id="no-host",
        ),
        pytest.param(
            "  a: {url: 'http://x.example:99999/a'}\n",
            ["cfg.yaml:6: lists.a.url: Port out of range 0-65535 in 'http://x.example:99999/a'"],
            id="bad-port",
        ),
        pytest.param(
            "  a: {url: 'http://x.example/a', ca_file: /ca.pem}\n",
            ["cfg.yaml:6: lists.a.ca_file: needs an https URL"],
            id="ca-file-on-http",
        ),
    ],
)
def test_list_entry_problems(body: str, expected: list[str]) -> None:
    assert _problems(body) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("hosts:/srv/a.txt", ("hosts", "/srv/a.txt"), id="format-file"),
        pytest.param("a.txt", (None, "a.txt"), id="file"),
        pytest.param("https://x.example/a", (None, "https://x.example/a"), id="url"),
        pytest.param("rpz:https://x.example/a", ("rpz", "https://x.example/a"), id="format-url"),
        pytest.param("shipped:wechat.yaml", (None, "shipped:wechat.yaml"), id="shipped"),
        pytest.param("yaml:shipped:tiktok.yaml", ("yaml", "shipped:tiktok.yaml"), id="both"),
        pytest.param("host:a.txt", (None, "host:a.txt"), id="not-a-format"),
    ],
)
def test_split_list_spec(spec: str, expected: tuple[str | None, str]) -> None:
    assert split_list_spec(spec) == expected


def test_list_flag_adds_lists_to_every_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config(
        HEAD + "  ads: {file: /srv/ads.yaml}\n  p: {file: /srv/p.yaml}\n", "cfg.yaml", None
    )
    config = with_overrides(
        config,
        lists=[
            "hosts:ads.txt",
            "/srv/other/ads.rpz",
            "https://lists.example.test/feeds/p.txt?v=1",
            "plain:https://lists.example.test/",
            "shipped:wechat.yaml",
            "weird name!.txt",
        ],
    )
    added = config.lists[2:]
    assert added == (
        ListConfig("ads-2", str(tmp_path / "ads.txt"), format="hosts"),
        ListConfig("ads-3", "/srv/other/ads.rpz"),
        ListConfig("p-2", url="https://lists.example.test/feeds/p.txt?v=1"),
        ListConfig("lists.example.test", url="https://lists.example.test/", format="plain"),
        ListConfig("wechat", "shipped:wechat.yaml"),
        ListConfig("weird-name", str(tmp_path / "weird name!.txt")),
    )
    names = tuple(item.name for item in added)
    assert [p.lists for p in config.policies] == [names, names]


def test_list_flag_problems() -> None:
    config = parse_config(HEAD + "  x: {file: /x.txt}\n", "cfg.yaml", None)
    with pytest.raises(ConfigError) as info:
        with_overrides(config, lists=["hosts:", "https:///x", "http://x.example:0x/"])
    assert info.value.problems == [
        "--list: nothing after the format in 'hosts:'",
        "--list: expected an http:// or https:// URL with a host (got 'https:///x')",
        "--list: Port could not be cast to integer value as '0x' in 'http://x.example:0x/'",
    ]
