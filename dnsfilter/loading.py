"""Loading a config and its lists the one way every command does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dnsfilter.config import Config, load_config
from dnsfilter.lists import load_lists
from dnsfilter.lists.model import BlockList
from dnsfilter.lists.sources import HostResolver


def load_configured(
    config_path: Path | None, adjust: Callable[[Config], Config] | None = None
) -> tuple[Config, list[BlockList]]:
    """The config (the embedded default without a path), adjusted, and its lists.

    adjust applies command-line flags before the lists load: --list adds lists, and
    --upstream is what URL lists resolve their servers' names with.
    """
    config = load_config(config_path)
    if adjust is not None:
        config = adjust(config)
    base = config_path.resolve().parent if config_path else Path.cwd()
    return config, load_lists(config.lists, base, HostResolver.from_config(config))
