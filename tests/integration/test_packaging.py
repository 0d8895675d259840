"""The wheel `pip install .` builds holds every module and the shipped lists."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_every_module_and_the_shipped_lists(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("dnsfilter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "dnsfilter").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    shipped = {f"dnsfilter/blocklists/{p.name}" for p in (ROOT / "blocklists").glob("*.yaml")}
    assert shipped and shipped <= names
    assert "dnsfilter/config/default_config.yaml" in names
