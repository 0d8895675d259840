"""The resolver never pays for scapy: importing the CLI and the server, building the parser and
running a command leave it unimported; only a capture loads it."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import dnsfilter.cli
import dnsfilter.datapath.server
import dnsfilter.egress.cli, dnsfilter.egress.detect, dnsfilter.egress.monitor
import dnsfilter.egress.nftables
dnsfilter.cli._parser()
assert dnsfilter.cli.main(["check-config"]) == 0
loaded = sorted(name for name in sys.modules if name == "scapy" or name.startswith("scapy."))
print("scapy modules:", loaded)
"""


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_scapy_is_not_imported_by_the_resolver_or_the_cli() -> None:
    assert "scapy modules: []" in run(CHECK)


def test_the_check_can_see_scapy_when_it_is_loaded() -> None:
    """The same check reports scapy once a capture function has run (it is not vacuous)."""
    code = CHECK.replace(
        "loaded = sorted",
        "from dnsfilter.egress.monitor import check_filter\n"
        'check_filter("dst port 53", "lo")\n'
        "loaded = sorted",
    )
    assert "'scapy'" in run(code)
