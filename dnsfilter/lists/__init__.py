"""Blocklists: loading them from their formats and sources, and where the shipped ones live."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dnsfilter.errors import ListError
from dnsfilter.lists.formats import FORMATS, detect_format, parse_list
from dnsfilter.lists.location import SHIPPED_PREFIX, is_url, resolve_list_path, shipped_dir
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.sources import HostResolver, ListSource, read_text

if TYPE_CHECKING:
    from dnsfilter.config import ListConfig

__all__ = [
    "FORMATS",
    "SHIPPED_PREFIX",
    "HostResolver",
    "ListSource",
    "detect_format",
    "list_sources",
    "load_list",
    "load_lists",
    "parse_list",
    "resolve_list_path",
    "shipped_dir",
]


def load_list(path: Path, name: str | None = None, format: str | None = None) -> BlockList:
    """Read and validate one list file (format detected when None); ListError on problems.

    Without a name a YAML list keeps its own and other formats take the file's stem.
    """
    text = read_text(path)
    format = format or detect_format(text, str(path))
    return parse_list(text, str(path), name or ("" if format == "yaml" else path.stem), format)


def list_sources(
    configured: Iterable[ListConfig | tuple[str, str]],
    base: Path,
    resolver: HostResolver | None = None,
) -> list[ListSource]:
    """A source per configured list: ListConfig entries, or (name, file-or-URL) pairs."""
    sources = []
    for item in configured:
        if isinstance(item, tuple):
            name, location = item
            if not is_url(location):
                location = str(resolve_list_path(location, base))
            sources.append(ListSource(name, location, resolver=resolver))
        elif item.url:
            sources.append(
                ListSource(
                    item.name,
                    item.url,
                    format=item.format,
                    refresh=item.refresh,
                    cache_dir=Path(item.cache_dir) if item.cache_dir else None,
                    ca_file=item.ca_file or None,
                    resolver=resolver,
                )
            )
        else:
            location = str(resolve_list_path(item.file, base))
            sources.append(ListSource(item.name, location, format=item.format))
    return sources


def load_lists(
    configured: Iterable[ListConfig | tuple[str, str]],
    base: Path,
    resolver: HostResolver | None = None,
) -> list[BlockList]:
    """Load lists in order; one ListError carries every list's problems.

    URL lists are downloaded (names resolved through resolver's upstreams) when their last
    good copy is older than their refresh interval; see ListSource.load.
    """
    loaded = []
    problems: list[str] = []
    for source in list_sources(configured, base, resolver):
        try:
            loaded.append(source.load())
        except ListError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ListError(problems)
    return loaded
