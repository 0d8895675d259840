"""Blocklists: loading them from their formats, and where the shipped ones live."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from importlib import resources
from pathlib import Path

from dnsfilter.errors import ListError
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.yamlformat import parse_yaml_list

#: Prefix of a list file shipped with dnsfilter, e.g. ``shipped:wechat.yaml``.
SHIPPED_PREFIX = "shipped:"


def shipped_dir() -> Path:
    """The directory of the lists installed with the package (blocklists/ in the repository)."""
    return Path(str(resources.files("dnsfilter.blocklists")))


def resolve_list_path(file: str, base: Path) -> Path:
    """Where a list file named in a config lives; relative paths are relative to base."""
    if file.startswith(SHIPPED_PREFIX):
        return shipped_dir() / file[len(SHIPPED_PREFIX) :]
    path = Path(file).expanduser()
    return path if path.is_absolute() else base / path


def load_list(path: Path, name: str | None = None) -> BlockList:
    """Read and validate one list file; raise ListError with file:line problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ListError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ListError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    blocklist = parse_yaml_list(text, str(path))
    if name is not None and blocklist.name != name:
        # The config's name is what metrics and policies use; the file's own name
        # is kept only when they agree, so a label never changes behind the operator.
        blocklist = replace(blocklist, name=name)
    return blocklist


def load_lists(configured: Iterable[tuple[str, str]], base: Path) -> list[BlockList]:
    """Load (name, file) pairs in order; one ListError carries every list's problems."""
    loaded = []
    problems: list[str] = []
    for name, file in configured:
        try:
            loaded.append(load_list(resolve_list_path(file, base), name))
        except ListError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ListError(problems)
    return loaded
