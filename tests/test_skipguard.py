"""tests/skipguard.py: with CI set a would-be skip fails; every run ends with a ``skipped:`` line.

Each case runs pytest in a subprocess on a tiny file of its own, with the plugin loaded by
``-p tests.skipguard`` and nothing else of this suite's configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = """
import pytest

@pytest.fixture
def tool():
    pytest.skip("needs the 'frob' command")

def test_passes():
    assert True

def test_skips_in_the_body():
    pytest.skip("needs root")

@pytest.mark.skipif(True, reason="needs root")
def test_skipif():
    pass

def test_skips_in_a_fixture(tool):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_skips_with_a_detail_of_its_own(n):
    pytest.skip(f"cannot mount a tmpfs: mount: /tmp/{n}: permission denied.\\n  see dmesg")

@pytest.mark.xfail(strict=True, reason="a known bug")
def test_known_bug():
    assert False
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("no_such_module_for_skipguard")

def test_never_collected():
    pass
"""


def run_pytest(directory: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-q", "--continue-on-collection-errors"]
    # Only the plugin under test: no cache, no asyncio, an empty ini of the sample's own.
    command += ["-p", "tests.skipguard", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    command += ["--rootdir", str(directory), "-c", str(directory / "pytest.ini"), str(directory)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=directory, env=env, check=False
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    (tmp_path / "test_optional.py").write_text(textwrap.dedent(SKIPPED_MODULE))
    return tmp_path


def last_line(output: str) -> str:
    """The plugin's line: the last, after pytest's own ``N passed ...``."""
    return output.rstrip().splitlines()[-1]


def outcomes(output: str) -> str:
    """pytest's ``N passed ...`` line, the one before the plugin's."""
    return output.rstrip().splitlines()[-2]


@pytest.mark.parametrize("ci", [None, "0"], ids=["unset", "zero"])
def test_without_ci_skips_are_skips_and_counted_by_reason(sample: Path, ci: str | None) -> None:
    result = run_pytest(sample, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(result.stdout).startswith("1 passed, 6 skipped, 1 xfailed"), result.stdout
    assert last_line(result.stdout) == (
        "skipped: 6 (cannot mount a tmpfs: 2, needs root: 2, "
        "could not import 'no_such_module_for_skipguard': 1, needs the 'frob' command: 1)"
        " — this run did not prove: test_optional.py (1), test_sample.py (5)"
    )


@pytest.mark.parametrize("ci", ["1", "true"])
def test_with_ci_every_would_be_skip_fails(sample: Path, ci: str) -> None:
    result = run_pytest(sample, ci)
    assert result.returncode == 1, result.stdout + result.stderr
    assert last_line(result.stdout) == "skipped: 0 (CI is set: 6 would-be skips failed instead)"
    # The body skip fails as a test; the skipif (evaluated at setup) and the fixture's skip as
    # setup errors; the module's importorskip as a collection error. The strict xfail stays.
    assert outcomes(result.stdout).startswith("3 failed, 1 passed, 1 xfailed, 3 errors")
    summary = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert sorted(line.split(" - ")[0] for line in summary) == [
        "ERROR test_optional.py",
        "ERROR test_sample.py::test_skipif",
        "ERROR test_sample.py::test_skips_in_a_fixture",
        "FAILED test_sample.py::test_skips_in_the_body",
        "FAILED test_sample.py::test_skips_with_a_detail_of_its_own[1]",
        "FAILED test_sample.py::test_skips_with_a_detail_of_its_own[2]",
    ]
    assert all("CI is set, so a skip is a failure" in line for line in summary), summary
    assert "this test must run here, but: needs the 'frob' command" in result.stdout


def test_no_skip_at_all_says_skipped_0(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_plain.py").write_text("def test_passes():\n    assert True\n")
    for ci in (None, "1"):
        result = run_pytest(tmp_path, ci)
        assert result.returncode == 0, result.stdout + result.stderr
        assert last_line(result.stdout) == "skipped: 0"
