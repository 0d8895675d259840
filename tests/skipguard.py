"""No silent skips: a pytest plugin that tests/conftest.py registers for the whole suite.

- When the environment variable ``CI`` is set (``1``, ``true`` or ``yes``), a test that would
  skip — ``pytest.skip`` in a test or a fixture, a ``skipif`` marker, ``importorskip``, a module
  skipped at collection — fails instead: CI promises root, the tools and the capabilities, so
  a skip there hides what the run did not prove. A strict ``xfail`` is not a skip (it fails
  the run the day its bug is fixed) and is left alone; pyproject sets ``xfail_strict``.
- Every run ends with one line, after pytest's own ``N passed ...``, that counts the skipped
  items and says why, grouped by reason (up to its first ``: ``; the detail after it is
  in ``-ra``'s list) and then by file:
  ``skipped: 9 (needs root: 9) — this run did not prove: tests/egress/test_netns.py (5), ...``
  or ``skipped: 0``. On CI the count is 0 by construction; the line then also says how many
  would-be skips failed instead.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator

import pytest

#: The section name that marks a report this plugin turned from a skip into a failure.
TURNED = "skipguard"


def in_ci() -> bool:
    """CI is set: a skip is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report gives, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _heading(reason: str) -> str:
    """What the summary groups by: a reason up to its first ``: `` (the rest is this test's
    detail: a namespace's name, a path, a tool's stderr), on one line."""
    return reason.strip().splitlines()[0].split(": ", 1)[0] if reason.strip() else "no reason"


def _is_skip(report: pytest.TestReport | pytest.CollectReport) -> bool:
    return report.skipped and not hasattr(report, "wasxfail")


def _turn_into_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _reason(report)
    report.outcome = "failed"
    report.longrepr = f"CI is set, so a skip is a failure: this test must run here, but: {reason}"
    report.sections.append((TURNED, reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if in_ci() and _is_skip(report):
        _turn_into_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if in_ci() and _is_skip(report):
        _turn_into_failure(report)
    return report


Report = pytest.TestReport | pytest.CollectReport


def _reports(stats: dict[str, list[object]], key: str) -> list[Report]:
    return [r for r in stats.get(key, []) if isinstance(r, Report)]


def summary_line(stats: dict[str, list[object]]) -> str:
    """``skipped: N (reason: n, ...) — this run did not prove: file (n), ...`` or ``skipped: 0``."""
    skipped = [r for r in _reports(stats, "skipped") if _is_skip(r)]
    turned = [
        r
        for key in ("failed", "error")
        for r in _reports(stats, key)
        if any(name == TURNED for name, _ in r.sections)
    ]
    line = f"skipped: {len(skipped)}"
    if skipped:
        reasons = Counter(_heading(_reason(r)) for r in skipped)
        files = Counter(r.nodeid.split("::")[0] for r in skipped)
        ranked = sorted(reasons.items(), key=lambda pair: (-pair[1], pair[0]))
        line += " (" + ", ".join(f"{reason}: {n}" for reason, n in ranked) + ")"
        line += " — this run did not prove: "
        line += ", ".join(f"{path} ({n})" for path, n in sorted(files.items()))
    if turned:
        line += f" (CI is set: {len(turned)} would-be skips failed instead)"
    return line


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None]:
    """Outermost, so the line comes after pytest's own ``N passed in ...``: the run's last."""
    yield
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if isinstance(reporter, pytest.TerminalReporter):
        reporter.write_line(summary_line(reporter.stats))
