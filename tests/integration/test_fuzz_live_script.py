"""The long live fuzz (`python -m fuzz.live`) still runs end to end, on a few packets.

It is run by hand for a million packets; here 2,000 prove the harness (nsd, the server, the
checks, the RSS readings, the JSON) so it cannot rot. The numbers are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz import live

pytestmark = pytest.mark.integration


def test_fuzz_live_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    assert live.main(["--packets", "2000", "--check-every", "1000", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["packets"] == 2000
    assert summary["crashed"] is False and summary["hangs"] == []
    assert summary["rss_before_kb"]["VmRSS"] > 0 and summary["rss_after_kb"]["VmRSS"] > 0
    assert [sent for sent, _ in summary["rss_samples_kb"]] == [0, 1000, 2000]
    assert sum(summary["server_counted"].values()) > 0


def test_fuzz_live_reports_a_server_that_stops_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([None])  # the check before the fuzz passes, every later one fails

    def check(server: object, tcp: bool = False) -> str | None:
        return next(answers, "no answer (simulated)")

    monkeypatch.setattr(live, "_check", check)
    out = tmp_path / "summary.json"
    assert live.main(["--packets", "400", "--check-every", "200", "--json", str(out)]) == 1
    hangs = json.loads(out.read_text())["hangs"]
    assert hangs[0] == "after 200 packets: no answer (simulated)"
