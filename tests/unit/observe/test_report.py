"""dnsfilter.observe.report: --since parsing and the three output formats, on literal rows."""

from __future__ import annotations

import io
import json

import pytest

from dnsfilter.observe.querylog import DeviceAttempts
from dnsfilter.observe.report import BYPASS_KINDS, expand_kinds, parse_since, write_report

NOW = 1_714_550_400.0  # 2024-05-01T08:00:00Z
ROWS = [
    DeviceAttempts(
        "wechat",
        "ministry",
        "10.1.2.3",
        412,
        NOW,
        NOW + 3661,
        (("weixin.qq.com", 300), ("dns.weixin.qq.com", 100), ("mp.weixin.qq.com", 12)),
    ),
    DeviceAttempts("wechat", "agency", "2001:db8::7", 3, NOW, NOW, (("weixin.qq.com", 3),)),
]


@pytest.mark.parametrize(
    ("text", "since"),
    [
        pytest.param("30m", NOW - 1800, id="minutes"),
        pytest.param("24h", NOW - 86400, id="hours"),
        pytest.param("7d", NOW - 7 * 86400, id="days"),
        pytest.param("2w", NOW - 14 * 86400, id="weeks"),
        pytest.param("90s", NOW - 90, id="seconds"),
        pytest.param("2024-05-01", NOW - 8 * 3600, id="date-is-utc-midnight"),
        pytest.param("2024-05-01T08:00", NOW, id="naive-time-is-utc"),
        pytest.param("2024-05-01T10:00+02:00", NOW, id="offset"),
        pytest.param("2024-05-01T08:00:00Z", NOW, id="zulu"),
    ],
)
def test_parse_since(text: str, since: float) -> None:
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize("text", ["", "7", "d", "7y", "-7d", "7 days", "yesterday", "2024-13-01"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 30m, 24h or 7d"):
        parse_since(text, NOW)


def _render(style: str, rows: list[DeviceAttempts] = ROWS) -> str:
    out = io.StringIO()
    write_report(rows, style, out)
    return out.getvalue()


def test_table() -> None:
    assert _render("table") == (
        "LIST    NETWORK   CLIENT       COUNT  FIRST SEEN            LAST SEEN             "
        "TOP NAMES\n"
        "wechat  ministry  10.1.2.3     412    2024-05-01T08:00:00Z  2024-05-01T09:01:01Z  "
        "weixin.qq.com (300), dns.weixin.qq.com (100), mp.weixin.qq.com (12)\n"
        "wechat  agency    2001:db8::7  3      2024-05-01T08:00:00Z  2024-05-01T08:00:00Z  "
        "weixin.qq.com (3)\n"
    )


def test_csv() -> None:
    assert _render("csv") == (
        "list,network,client,count,first_seen,last_seen,top_names\n"
        "wechat,ministry,10.1.2.3,412,2024-05-01T08:00:00Z,2024-05-01T09:01:01Z,"
        "weixin.qq.com:300 dns.weixin.qq.com:100 mp.weixin.qq.com:12\n"
        "wechat,agency,2001:db8::7,3,2024-05-01T08:00:00Z,2024-05-01T08:00:00Z,weixin.qq.com:3\n"
    )


def test_json() -> None:
    assert json.loads(_render("json"))[1] == {
        "list": "wechat",
        "network": "agency",
        "client": "2001:db8::7",
        "count": 3,
        "first_seen": "2024-05-01T08:00:00Z",
        "last_seen": "2024-05-01T08:00:00Z",
        "top_names": [{"name": "weixin.qq.com", "count": 3}],
    }


def test_empty_report() -> None:
    assert _render("table", []) == "no blocked attempts recorded\n"
    assert _render("csv", []) == "list,network,client,count,first_seen,last_seen,top_names\n"
    assert _render("json", []) == "[]\n"


#: Bypass rows of `dnsfilter monitor` beside a blocked one, as device_attempts gives them.
KIND_ROWS = [
    DeviceAttempts(
        "", "ministry", "10.1.2.3", 2, NOW, NOW, (("198.51.100.99:53", 2),), "dns_other_resolver"
    ),
    DeviceAttempts(
        "wechat", "ministry", "10.1.2.3", 412, NOW, NOW, (("weixin.qq.com", 412),), "blocked"
    ),
    DeviceAttempts(
        "wechat",
        "ministry",
        "10.1.2.3",
        3,
        NOW,
        NOW + 60,
        (("[2001:db8:bad::1]:443", 3),),
        "flow_banned_prefix",
    ),
]


def _render_kinds(style: str) -> str:
    out = io.StringIO()
    write_report(KIND_ROWS, style, out, with_kind=True)
    return out.getvalue()


def test_table_with_kinds() -> None:
    assert _render_kinds("table") == (
        "LIST    NETWORK   CLIENT    KIND                COUNT  FIRST SEEN            "
        "LAST SEEN             TOP NAMES\n"
        "-       ministry  10.1.2.3  dns_other_resolver  2      2024-05-01T08:00:00Z  "
        "2024-05-01T08:00:00Z  198.51.100.99:53 (2)\n"
        "wechat  ministry  10.1.2.3  blocked             412    2024-05-01T08:00:00Z  "
        "2024-05-01T08:00:00Z  weixin.qq.com (412)\n"
        "wechat  ministry  10.1.2.3  flow_banned_prefix  3      2024-05-01T08:00:00Z  "
        "2024-05-01T08:01:00Z  [2001:db8:bad::1]:443 (3)\n"
    )


def test_csv_with_kinds() -> None:
    assert _render_kinds("csv") == (
        "list,network,client,kind,count,first_seen,last_seen,top_names\n"
        ",ministry,10.1.2.3,dns_other_resolver,2,2024-05-01T08:00:00Z,2024-05-01T08:00:00Z,"
        "198.51.100.99:53:2\n"
        "wechat,ministry,10.1.2.3,blocked,412,2024-05-01T08:00:00Z,2024-05-01T08:00:00Z,"
        "weixin.qq.com:412\n"
        "wechat,ministry,10.1.2.3,flow_banned_prefix,3,2024-05-01T08:00:00Z,2024-05-01T08:01:00Z,"
        "[2001:db8:bad::1]:443:3\n"
    )


def test_json_with_kinds() -> None:
    document = json.loads(_render_kinds("json"))
    assert [list(row) for row in document] == [
        ["list", "network", "client", "kind", "count", "first_seen", "last_seen", "top_names"]
    ] * 3
    assert document[0]["list"] == ""
    assert document[2]["kind"] == "flow_banned_prefix"
    assert document[2]["top_names"] == [{"name": "[2001:db8:bad::1]:443", "count": 3}]
    empty = io.StringIO()
    write_report([], "table", empty, with_kind=True)
    assert empty.getvalue() == "nothing of these kinds recorded\n"


@pytest.mark.parametrize(
    ("chosen", "kinds"),
    [
        pytest.param(["blocked"], ("blocked",), id="blocked"),
        pytest.param(
            ["bypass"],
            (
                "dns_other_resolver",
                "dot_other_resolver",
                "sni_doh_resolver",
                "sni_blocked",
                "flow_banned_prefix",
            ),
            id="bypass",
        ),
        pytest.param(["all"], ("blocked", *BYPASS_KINDS), id="all"),
        pytest.param(
            ["sni_blocked", "blocked", "sni_blocked"], ("blocked", "sni_blocked"), id="repeated"
        ),
    ],
)
def test_expand_kinds(chosen: list[str], kinds: tuple[str, ...]) -> None:
    assert expand_kinds(chosen) == kinds
