"""dnsfilter.operate.loading: what serve does with the memory a load leaves behind."""

from __future__ import annotations

import ctypes
import gc

import pytest

from dnsfilter.operate.loading import release_memory


class _Glibc:
    def __init__(self) -> None:
        self.trims: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


def test_release_memory_trims_the_c_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _Glibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    release_memory()
    assert libc.trims == [0]


def test_release_memory_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    # musl and other C libraries have no malloc_trim: the collection is all there is.
    calls: list[object] = []

    def collect() -> int:
        calls.append("collect")
        return 0

    def cdll(name: str | None) -> object:
        calls.append(("CDLL", name))
        return object()

    monkeypatch.setattr(gc, "collect", collect)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    release_memory()  # no AttributeError for the missing malloc_trim
    assert calls == ["collect", ("CDLL", None)]
