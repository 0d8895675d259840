"""docs/dnsfilter.8 is what scripts/manpage.py makes of the CLI's parser today, covers every
sub-command, and renders without a warning."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfilter.cli import _parser
from tests.docs.markdown import ROOT

PAGE = ROOT / "docs" / "dnsfilter.8"
_ENV = {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "100"}


def _generate() -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "manpage.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _commands(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub.prog
                yield from _commands(sub)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package groff-base / man-db)")
    return path


def test_the_page_is_up_to_date_with_the_parser() -> None:
    assert PAGE.read_text() == _generate(), (
        "docs/dnsfilter.8 is stale: .venv/bin/python scripts/manpage.py > docs/dnsfilter.8"
    )


def test_every_subcommand_and_option_is_on_the_page() -> None:
    page = PAGE.read_text().replace("\\-", "-")
    commands = list(_commands(_parser()))
    assert "dnsfilter lists export" in commands
    for prog in commands:
        assert f'.SS "{prog}"' in page
    assert "--metrics-listen" in page and "--public-suffix-list" in page


def _groff(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("groff"), "-t", "-man", "-Tutf8", "-ww", "-z", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_ENV,
        check=False,
    )


def test_groff_renders_the_page_without_warnings() -> None:
    result = _groff(PAGE)
    assert (result.returncode, result.stderr) == (0, "")


def test_a_warning_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.8"
    bad.write_text(PAGE.read_text() + ".nosuchmacro\n")
    assert "nosuchmacro" in _groff(bad).stderr


def test_man_shows_the_page() -> None:
    result = subprocess.run(
        [_tool("man"), "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_ENV,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "dnsfilter lists export" in result.stdout
    assert "EXIT STATUS" in result.stdout
