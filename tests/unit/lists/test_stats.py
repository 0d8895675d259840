"""dnsfilter.lists.stats: counts per list, and load time and memory that grow with the list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfilter.cli import main


def _document(name: str, domains: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "vendor": "Test",
        "category": "other",
        "description": "test",
        "references": [{"url": "https://example.org/", "title": "t"}],
        "domains": domains,
        **extra,
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    small = _document(
        "small",
        ["a.test", "A.test."],  # the second is a duplicate once normalized
        exceptions=[{"domain": "ok.a.test"}],
        networks=[{"prefix": "192.0.2.0/24"}, {"prefix": "2001:db8::/32"}],
    )
    big = _document("big", [f"host{i}.big.test" for i in range(3000)])
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(big))
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "lists": {"small": {"file": "small.yaml"}, "big": {"file": "big.yaml"}},
                "allowlist": ["fine.test"],
            },
            sort_keys=False,  # lists in this order
        )
    )
    return path


def test_json_counts_time_and_memory(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "stats", "--config", str(config), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    small, big = report["lists"]
    assert {k: small[k] for k in ("name", "domains", "exceptions", "duplicates")} == {
        "name": "small",
        "domains": 1,
        "exceptions": 1,
        "duplicates": 1,
    }
    assert (small["networks_v4"], small["networks_v6"]) == (1, 1)
    assert (big["name"], big["domains"]) == ("big", 3000)
    assert small["load_seconds"] > 0 and big["load_seconds"] > small["load_seconds"]
    # What a 3000-entry list keeps is far more than what a one-entry list keeps.
    assert big["memory_bytes"] > 10 * small["memory_bytes"] > 0
    assert big["peak_bytes"] >= big["memory_bytes"]
    assert report["total"]["domains"] == 3001
    assert report["total"]["memory_bytes"] == small["memory_bytes"] + big["memory_bytes"]
    # Entries of both lists, one exception and the allowlist name.
    assert report["match_table"]["names"] == 3003
    assert report["match_table"]["bytes"] > 0


def test_text_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "stats", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"config: {config}"
    assert lines[1].split() == [
        "list",
        "domains",
        "exceptions",
        "networks",
        "v4/v6",
        "dups",
        "load",
        "ms",
        "KiB",
        "peak",
        "KiB",
    ]
    assert lines[2].split()[:5] == ["small", "1", "1", "1/1", "1"]
    assert lines[3].split()[:5] == ["big", "3000", "0", "0/0", "0"]
    assert lines[5].split()[:5] == ["total", "3001", "1", "1/1", "1"]
    assert lines[6].startswith("match table: 3003 names, ")


def test_a_broken_list_exits_2_naming_every_problem(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config.parent / "small.yaml").write_text(yaml.safe_dump(_document("small", ["a..test"])))
    (config.parent / "big.yaml").unlink()
    assert main(["lists", "stats", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "small.yaml:" in err and "big.yaml: cannot read" in err


def test_the_embedded_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "stats"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[2:6]]
    assert names == ["wechat", "tiktok", "kaspersky", "bypass"]
    # Every shipped entry has a role: no "none" count, and the rejected names are counted.
    roles = out.split("roles (entries per role; an entry may have several):\n")[1]
    assert "none" not in roles.split("sources:")[0]
    assert "  kaspersky: backend 2, download 2, storefront 35; rejected names 0\n" in roles
