"""The exported ruleset passes Debian's own nft parser (`nft -c -f`), for the shipped lists too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.egress.conftest import dnsfilter

pytestmark = pytest.mark.needs_root


def nft_check(ruleset: Path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("needs the 'nft' command (Debian package nftables)")
    result = subprocess.run(
        ["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True, timeout=30, check=False
    )
    if "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN (run as root)")
    assert result.returncode == 0, f"{result.stderr}\n{ruleset.read_text()}"


def export(tmp_path: Path, *args: str) -> Path:
    result = dnsfilter("egress", "export", "--format", "nftables", *args)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "egress.nft"
    path.write_text(result.stdout)
    return path


def test_default_config_export_passes_nft(tmp_path: Path) -> None:
    ruleset = export(tmp_path)
    nft_check(ruleset)
    # The shipped app lists carry networks: the banned sets are not empty.
    assert "77.74.176.0/21" in ruleset.read_text()  # kaspersky.yaml


def test_shipped_bypass_list_with_drop_doh_passes_nft(tmp_path: Path) -> None:
    config = {
        "server": {"listen": ["10.0.0.53:53", "[fd00::53]:53"]},
        "upstream": {"servers": ["9.9.9.9", "[2620:fe::fe]:53"]},
        "networks": {"lan": ["10.0.0.0/8", "fd00::/8"]},
        "lists": {
            name: {"file": f"shipped:{name}.yaml"}
            for name in ("wechat", "tiktok", "kaspersky", "bypass")
        },
        "policies": {
            "default": {"networks": ["lan"], "lists": ["wechat", "tiktok", "kaspersky", "bypass"]}
        },
    }
    path = tmp_path / "dnsfilter.yaml"
    path.write_text(yaml.safe_dump(config))
    ruleset = export(tmp_path, "--config", str(path), "--drop-doh")
    nft_check(ruleset)
    text = ruleset.read_text()
    # bypass.yaml: Tencent HTTPDNS entry points .98/32 and .99/32, merged
    assert "119.29.29.98/31" in text
    assert "ip daddr @doh_v4 counter drop" in text


def test_test_config_export_passes_nft(tmp_path: Path, config_path: Path) -> None:
    nft_check(export(tmp_path, "--config", str(config_path), "--drop-doh"))
