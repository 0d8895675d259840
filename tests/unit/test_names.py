"""dnsfilter.names: how list entries and query names are normalized and walked."""

from __future__ import annotations

import pytest

from dnsfilter.names import InvalidName, normalize_domain, plain_tail, suffixes

_LABEL_63 = "a" * 63
_LABEL_64 = "a" * 64
# Four labels of 63, 63, 63 and 61 characters plus three dots: exactly 253 characters.
_NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
_NAME_254 = _NAME_253 + "d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("example.com", "example.com", id="already-normal"),
        pytest.param("Example.COM", "example.com", id="uppercase"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("  example.com  ", "example.com", id="surrounding-spaces"),
        pytest.param("bücher.de", "xn--bcher-kva.de", id="idn-to-punycode"),
        pytest.param("BÜCHER.DE.", "xn--bcher-kva.de", id="idn-uppercase-trailing-dot"),
        pytest.param("münchen.DE", "xn--mnchen-3ya.de", id="idn-mixed-case-ascii-label"),
        pytest.param("xn--bcher-kva.de", "xn--bcher-kva.de", id="punycode-kept"),
        # IDNA 2008 keeps the sharp s (IDNA 2003 made it "ss": fass.de, another domain).
        pytest.param("faß.de", "xn--fa-hia.de", id="idna-2008-sharp-s"),
        pytest.param("FAß.DE", "xn--fa-hia.de", id="idna-2008-sharp-s-uppercase-ascii"),
        pytest.param("\uff22\u00dcCHER\uff0ede", "xn--bcher-kva.de", id="uts46-full-width-folded"),
        pytest.param("_dmarc.bücher.de", "_dmarc.xn--bcher-kva.de", id="idn-with-underscore-label"),
        pytest.param("XN--BCHER-KVA.DE", "xn--bcher-kva.de", id="punycode-uppercase"),
        pytest.param("_dmarc.example.com", "_dmarc.example.com", id="underscore-label"),
        pytest.param("a-b.example", "a-b.example", id="inner-hyphen"),
        pytest.param("com", "com", id="single-label"),
        pytest.param("1.2.3.4", "1.2.3.4", id="digits-only-labels"),
        pytest.param(f"{_LABEL_63}.com", f"{_LABEL_63}.com", id="label-of-63"),
        pytest.param(_NAME_253, _NAME_253, id="name-of-253"),
        pytest.param(_NAME_253 + ".", _NAME_253, id="name-of-253-plus-root-dot"),
    ],
)
def test_normalize_domain_accepts(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty name", id="empty"),
        pytest.param("   ", "empty name", id="blank"),
        pytest.param(".", "empty name", id="root-only"),
        pytest.param("..", "'..' has an empty label", id="two-dots"),
        pytest.param("a..b", "'a..b' has an empty label", id="inner-empty-label"),
        pytest.param(".example.com", "'.example.com' has an empty label", id="leading-dot"),
        pytest.param("example.com..", "'example.com..' has an empty label", id="two-trailing-dots"),
        pytest.param(
            f"{_LABEL_64}.com",
            "label 'aaaaaaaaaaaaaaaaaaaa'... is longer than 63 characters",
            id="label-of-64",
        ),
        pytest.param(_NAME_254, "name longer than 253 characters (254)", id="name-of-254"),
        pytest.param(
            "*.example.com",
            "'*.example.com': an entry already matches every name below it; drop the '*.'",
            id="wildcard-prefix",
        ),
        pytest.param(
            "*.Example.COM.",
            "'*.Example.COM.': an entry already matches every name below it; drop the '*.'",
            id="wildcard-prefix-keeps-original-text",
        ),
        pytest.param(
            "x.*.com", "label '*' has characters other than a-z 0-9 - _", id="inner-wildcard"
        ),
        pytest.param(
            "exa mple.com",
            "label 'exa mple' has characters other than a-z 0-9 - _",
            id="space-inside",
        ),
        pytest.param("a/b.com", "label 'a/b' has characters other than a-z 0-9 - _", id="slash"),
        pytest.param(
            "http://example.com",
            "label 'http://example' has characters other than a-z 0-9 - _",
            id="url-not-name",
        ),
        # The label's characters are all allowed; only the hyphen's position is wrong.
        pytest.param("-bad.com", "label '-bad' starts or ends with '-'", id="leading-hyphen"),
        pytest.param("bad-.com", "label 'bad-' starts or ends with '-'", id="trailing-hyphen"),
        pytest.param("bü..de", "'bü..de' has an empty label", id="idn-empty-label"),
        pytest.param(
            "☃.net",
            "cannot encode '☃.net' as an IDN (IDNA 2008): "
            "Codepoint U+2603 at position 1 of '☃' not allowed",
            id="idn-symbol-not-allowed-in-idna-2008",
        ),
        pytest.param(
            "bü-.de",
            "cannot encode 'bü-.de' as an IDN (IDNA 2008): "
            "Label must not start or end with a hyphen",
            id="idn-trailing-hyphen",
        ),
    ],
)
def test_normalize_domain_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidName) as info:
        normalize_domain(text)
    assert str(info.value) == message


def test_invalid_name_is_a_value_error() -> None:
    # Callers that only know ValueError (argparse type=, ipaddress-style code) still catch it.
    with pytest.raises(ValueError) as info:
        normalize_domain("")
    assert str(info.value) == "empty name"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "a.b.example.com",
            ["a.b.example.com", "b.example.com", "example.com", "com"],
            id="four-labels",
        ),
        pytest.param("example.com", ["example.com", "com"], id="two-labels"),
        pytest.param("com", ["com"], id="one-label"),
        pytest.param("", [""], id="empty"),
        pytest.param("tiktok.com", ["tiktok.com", "com"], id="no-partial-label-suffixes"),
    ],
)
def test_suffixes(name: str, expected: list[str]) -> None:
    assert suffixes(name) == expected


@pytest.mark.parametrize(
    ("name", "tail"),
    [
        pytest.param("www.example.com", "www.example.com", id="plain-whole"),
        pytest.param(r"weixin\.qq\.com", "", id="one-label-with-dots"),
        pytest.param(r"x.weixin\.qq.com", "com", id="escaped-middle-label"),
        pytest.param(r"evil\.label.weixin.qq.com", "weixin.qq.com", id="escaped-first-label"),
        pytest.param(r"a\\.com", "com", id="escaped-backslash-then-dot"),
        pytest.param(r"a\046b.c.d", "c.d", id="decimal-escape"),
        pytest.param(r"a.b\\", "", id="last-label-escaped"),
        pytest.param("", "", id="root"),
    ],
)
def test_plain_tail(name: str, tail: str) -> None:
    assert plain_tail(name) == tail
