"""Command-line flags laid over a loaded config: each replaces its value only when given."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from dnsfilter.config.addresses import parse_host_port, parse_upstream
from dnsfilter.config.kinds import ACCOUNT, local_path
from dnsfilter.config.loader import url_problem
from dnsfilter.config.values import Config, ListConfig, is_url
from dnsfilter.errors import ConfigError
from dnsfilter.lists.model import FORMATS


def with_overrides(
    config: Config,
    listen: list[str] | None = None,
    upstreams: list[str] | None = None,
    log_level: str | None = None,
    metrics_listen: str | None = None,
    lists: list[str] | None = None,
    user: str | None = None,
    group: str | None = None,
) -> Config:
    """Apply command-line flags; each replaces its config value only when given.

    lists (``--list [FORMAT:]FILE_OR_URL``) are added to the configured ones and to every
    policy; relative paths are taken from the working directory.
    """
    problems: list[str] = []
    if lists:
        config = _with_lists(config, lists, problems)
    if metrics_listen:
        try:
            address = parse_host_port(metrics_listen, 9153)
            metrics = replace(config.metrics, enabled=True, listen=address)
            config = replace(config, metrics=metrics)
        except ValueError as exc:
            problems.append(f"--metrics-listen: {exc}")
    if listen:
        addresses = []
        for text in listen:
            try:
                addresses.append(parse_host_port(text, 53))
            except ValueError as exc:
                problems.append(f"--listen: {exc}")
        config = replace(config, server=replace(config.server, listen=tuple(addresses)))
    if upstreams:
        servers = []
        for text in upstreams:
            try:
                servers.append(parse_upstream(text))
            except ValueError as exc:
                problems.append(f"--upstream: {exc}")
        config = replace(config, upstream=replace(config.upstream, servers=tuple(servers)))
    if log_level:
        config = replace(config, log_level=log_level)
    for key, value in (("user", user), ("group", group)):
        if value is not None and not ACCOUNT.fullmatch(value):
            problems.append(f"--{key}: expected a {key} name or number (got {value!r})")
    if user is not None:
        config = replace(config, server=replace(config.server, user=user))
    if group is not None:
        config = replace(config, server=replace(config.server, group=group))
    if problems:
        raise ConfigError(problems)
    return config


def split_list_spec(spec: str) -> tuple[str | None, str]:
    """``[FORMAT:]FILE_OR_URL`` as (format or None, location)."""
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in FORMATS:
        return prefix, rest
    return None, spec


def _with_lists(config: Config, specs: list[str], problems: list[str]) -> Config:
    taken = {item.name for item in config.lists}
    added = []
    for spec in specs:
        list_format, location = split_list_spec(spec)
        if not location:
            problems.append(f"--list: nothing after the format in {spec!r}")
            continue
        name = _unique_name(_list_stem(location), taken)
        taken.add(name)
        if is_url(location):
            problem = url_problem(location)
            if problem:
                problems.append(f"--list: {problem}")
                continue
            added.append(ListConfig(name, url=location, format=list_format))
        else:
            file = location
            if not file.startswith("shipped:"):
                file = local_path(file, Path.cwd())
            added.append(ListConfig(name, file, format=list_format))
    names = tuple(item.name for item in added)
    return replace(
        config,
        lists=config.lists + tuple(added),
        policies=tuple(replace(p, lists=p.lists + names) for p in config.policies),
    )


def _list_stem(location: str) -> str:
    """A list name from a file or URL: its last path segment without the extension."""
    if is_url(location):
        parts = urlsplit(location)
        stem = Path(parts.path).stem or (parts.hostname or "")
    else:
        stem = Path(location.removeprefix("shipped:")).stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")
    return cleaned or "list"


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"
