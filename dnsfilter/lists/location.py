"""Where a configured list lives: a URL, a shipped list, or a file relative to the config.

A small module of its own, importing nothing of dnsfilter: the config loader checks list
entries with it (is_url, the refresh bounds), and the list sources read their files and URLs
with the same rules, without the config and the sources importing each other.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Seconds between downloads of a URL list, unless its config says otherwise.
DEFAULT_REFRESH = 86400
#: The shortest refresh interval a config may ask for.
MIN_REFRESH = 60
#: Prefix of a list file shipped with dnsfilter, e.g. ``shipped:wechat.yaml``.
SHIPPED_PREFIX = "shipped:"


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def shipped_dir() -> Path:
    """The directory of the lists installed with the package (blocklists/ in the repository)."""
    return Path(str(resources.files("dnsfilter.blocklists")))


def resolve_list_path(file: str, base: Path) -> Path:
    """Where a list file named in a config lives; relative paths are relative to base."""
    if file.startswith(SHIPPED_PREFIX):
        return shipped_dir() / file[len(SHIPPED_PREFIX) :]
    path = Path(file).expanduser()
    return path if path.is_absolute() else base / path
