"""Builds the compiled datapath (dnsfilter/datapath/_fastpath.pyx) when it can.

The package is whole without it: with no C compiler, or with DNSFILTER_PURE_BUILD=1, the
install goes on with the pure-Python datapath and says so in one line. Everything else about
the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NOTICE = "dnsfilter: installing the pure-Python datapath only"


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers
            print(f"{NOTICE} (the compiled one did not build: {exc})", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"{NOTICE} (the compiled one did not build: {exc})", file=sys.stderr)


def extensions() -> list[Extension]:
    if os.environ.get("DNSFILTER_PURE_BUILD", "") not in ("", "0"):
        print(f"{NOTICE} (DNSFILTER_PURE_BUILD is set)", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print(f"{NOTICE} (Cython is not installed)", file=sys.stderr)
        return []
    flags = ["-O2"]
    link: list[str] = []
    if os.environ.get("DNSFILTER_ASAN", "") not in ("", "0"):
        # AddressSanitizer build for the fuzz run: python must then run with libasan preloaded.
        flags = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
        link = ["-fsanitize=address"]
    ext = Extension(
        "dnsfilter.datapath._fastpath",
        ["dnsfilter/datapath/_fastpath.pyx"],
        extra_compile_args=flags,
        extra_link_args=link,
    )
    return cythonize([ext], quiet=True, language_level=3)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
