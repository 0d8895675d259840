"""A small tmpfs of a test's own, to fill an audit store's file system for real.

Mounting needs root (CI runs as root). Without it the tests skip; when CI is set,
tests/skipguard.py turns the skip into a failure (a skip there would hide a missing capability).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of size_kib KiB mounted on path (created) for the block; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to mount a small tmpfs")
    for tool in ("mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool!r} command (Debian package mount)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "dnsfilter-test", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (no CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazy: a process that still holds a file there must not leave the mount behind.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=True)


def fill(directory: Path, leave_kib: int = 0) -> Path:
    """Write a file in directory until its file system is full (but for leave_kib KiB)."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        while True:
            stat = os.statvfs(directory)
            if stat.f_bavail * stat.f_frsize <= leave_kib * 1024:
                break
            try:
                handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler
