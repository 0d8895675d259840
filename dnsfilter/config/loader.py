"""Reading a config file: the schema walked over the YAML tree, every mistake reported at once.

Sections of keys are read by their kinds (values.py declares them); the named maps below
(forward zones, networks, lists, policies) and the references between sections are
checked by hand, with the same `file:line: key.path: what is wrong` lines.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dnsfilter.config.kinds import is_null, key_line, local_path, network, read_servers
from dnsfilter.config.schema import INVALID, At, Section, keys_of, read_roles, read_values
from dnsfilter.config.values import (
    DEFAULT_CONFIG_NAME,
    RESERVED_NETWORK,
    Config,
    ForwardZone,
    IPNetwork,
    ListConfig,
    NetworkConfig,
    PolicyConfig,
    is_url,
)
from dnsfilter.config.yamltree import (
    Mapping,
    Node,
    Reader,
    Scalar,
    Sequence,
    YamlSyntaxError,
    by_line,
    get,
    parse,
)
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.errors import ConfigError
from dnsfilter.lists.model import Role
from dnsfilter.names import InvalidName, normalize_domain

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL_ONLY = ("refresh", "cache_dir", "ca_file")


def default_config_text() -> str:
    return resources.files("dnsfilter.config").joinpath("default_config.yaml").read_text("utf-8")


def load_config(path: Path | None) -> Config:
    """Read a config file, or the embedded default when path is None."""
    if path is None:
        return parse_config(default_config_text(), DEFAULT_CONFIG_NAME, base=None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    return parse_config(text, str(path), base=path.resolve().parent)


def parse_config(text: str, filename: str, base: Path | None) -> Config:
    """Build a Config from YAML text; relative list paths are taken from base."""
    try:
        root, problems = parse(text, filename)
    except YamlSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    r = Reader(filename, problems)
    top = r.mapping(root, "", frozenset(k.name for k in keys_of(Config)))
    values: dict[str, Any] = {"source": filename}
    for k in keys_of(Config):
        node = get(top, k.name)
        if isinstance(k.kind, Section) or k.name == "log_level":
            if node is not None and top is not None:
                value = k.kind.read(node, At(r, top, k.name, k.name, base))
                if value is not INVALID:
                    values[k.name] = value
        else:
            values[k.name] = _TOP[k.name](r, node, base)
    config = Config(**values)
    _cross_check(r, config, top)
    if r.problems:
        raise ConfigError(by_line(r.problems, filename))
    return config


def _named(r: Reader, node: Node | None, path: str) -> list[tuple[str, int, Node | None, str]]:
    """(name, line, value, path) of each entry of a name -> entry mapping."""
    mapping = r.mapping(node, path)
    return [
        (name, line, child, f"{path}.{name}")
        for name, (line, child) in (mapping.items if mapping else {}).items()
    ]


def _check_name(r: Reader, line: int, path: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        r.problem(line, path, "names use letters, digits, '.', '-' and '_'")


def _forward_zones(r: Reader, node: Node | None, base: Path | None) -> tuple[ForwardZone, ...]:
    zones = []
    for key, line, child, path in _named(r, node, "forward_zones"):
        try:
            zone = normalize_domain(key)
        except InvalidName as exc:
            r.problem(line, path, f"bad zone name: {exc}")
            continue
        servers = read_servers(r, child, path, base)
        if not servers:
            r.problem(line, path, "needs at least one server")
            continue
        zones.append(ForwardZone(zone, servers))
    return tuple(zones)


def _networks(r: Reader, node: Node | None, base: Path | None) -> tuple[NetworkConfig, ...]:
    networks = []
    for name, line, child, path in _named(r, node, "networks"):
        _check_name(r, line, path, name)
        if name == RESERVED_NETWORK:
            r.problem(line, path, f"{name!r} is reserved for clients in no network")
        prefixes = []
        for item_line, item_path, text in r.strings(child, path):
            try:
                prefixes.append(network(text))
            except ValueError as exc:
                r.problem(item_line, item_path, str(exc))
        if child is None or (isinstance(child, Sequence) and not child.items) or is_null(child):
            r.problem(line, path, "needs at least one prefix")
        networks.append(NetworkConfig(name, tuple(prefixes)))
    return tuple(networks)


_LIST_KEYS = tuple(k.name for k in keys_of(ListConfig))


def _lists(r: Reader, node: Node | None, base: Path | None) -> tuple[ListConfig, ...]:
    lists = []
    for name, line, child, path in _named(r, node, "lists"):
        _check_name(r, line, path, name)
        entry = r.mapping(child, path, frozenset(_LIST_KEYS))
        if entry is None:
            if child is None:
                r.problem(line, path, "needs a mapping with 'file' or 'url'")
            continue
        if ("file" in entry.items) == ("url" in entry.items):
            r.problem(entry.line, path, "needs exactly one of 'file' and 'url'")
        v = read_values(ListConfig, entry, At(r, entry, "", path, base), _LIST_KEYS)
        if "file" in entry.items:
            for key in _URL_ONLY:
                if key in entry.items:
                    r.problem(key_line(entry, key), f"{path}.{key}", "applies to url lists only")
        url, file = v.pop("url", None), v.pop("file", None)
        if url is not None:
            problem = url_problem(url)
            if problem:
                r.problem(key_line(entry, "url"), path + ".url", problem)
                continue
            if v.get("ca_file") and not url.startswith("https:"):
                r.problem(key_line(entry, "ca_file"), path + ".ca_file", "needs an https URL")
            for key in ("cache_dir", "ca_file"):
                v[key] = local_path(v[key], base) if v.get(key) else ""
            lists.append(ListConfig(name, line=entry.line, url=url, **v))
        elif file is not None:
            if not file.startswith("shipped:") and base is not None:
                file = local_path(file, base)
            lists.append(ListConfig(name, file, entry.line, format=v.get("format")))
    return tuple(lists)


def url_problem(url: str) -> str | None:
    """Why url cannot be a list's URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what raises
    except ValueError as exc:
        return f"{exc} in {url!r}"
    if not is_url(url) or not parts.hostname:
        return f"expected an http:// or https:// URL with a host (got {url!r})"
    return None


def _allowlist(r: Reader, node: Node | None, base: Path | None) -> tuple[str, ...]:
    names = []
    for line, path, text in r.strings(node, "allowlist"):
        try:
            names.append(normalize_domain(text))
        except InvalidName as exc:
            r.problem(line, path, str(exc))
    return tuple(dict.fromkeys(names))


_POLICY_KEYS = frozenset(k.name for k in keys_of(PolicyConfig))
_POLICY_REST = ("non_recursive", "ttl", "cname_inspection", "response_ip_blocking")


def _policies(r: Reader, node: Node | None, base: Path | None) -> tuple[PolicyConfig, ...]:
    policies = []
    for name, line, child, path in _named(r, node, "policies"):
        _check_name(r, line, path, name)
        entry = r.mapping(child, path, _POLICY_KEYS)
        if entry is None:
            if child is None:
                r.problem(line, path, "needs a mapping with networks and lists")
            continue
        at = At(r, entry, "", path, base)
        v = read_values(PolicyConfig, entry, at, ("networks",))
        if "networks" not in entry.items:
            r.problem(entry.line, path, "missing required key 'networks'")
        v["lists"], roles = _policy_lists(r, get(entry, "lists"), path + ".lists")
        v |= read_values(PolicyConfig, entry, at, ("mode", "sinkhole_ipv4", "sinkhole_ipv6"))
        no_address = v.get("sinkhole_ipv4") is None and v.get("sinkhole_ipv6") is None
        if v.get("mode") is BlockMode.SINKHOLE and no_address:
            r.problem(entry.line, path, "mode sinkhole needs sinkhole_ipv4 or sinkhole_ipv6")
        v |= read_values(PolicyConfig, entry, at, _POLICY_REST)
        policies.append(PolicyConfig(name, roles=roles, **v))
    return tuple(policies)


def _policy_lists(
    r: Reader, node: Node | None, path: str
) -> tuple[tuple[str, ...], tuple[tuple[str, frozenset[Role]], ...]]:
    """A policy's lists: a name enforces every role of the list, a mapping
    `{list: NAME, roles: [ROLE, ...]}` only the roles given."""
    names: list[str] = []
    roles: list[tuple[str, frozenset[Role]]] = []
    for index, child in enumerate(r.sequence(node, path)):
        item = f"{path}[{index}]"
        if not isinstance(child, Mapping):
            text = r.string(child, item)
            if text is not None:
                names.append(text)
            continue
        r.mapping(child, item, frozenset({"list", "roles"}))
        name = r.string(get(child, "list"), item + ".list")
        if "list" not in child.items:
            r.problem(child.line, item, "missing required key 'list'")
        chosen = read_roles(r, get(child, "roles"), item + ".roles", Role)
        if "roles" not in child.items:
            r.problem(
                child.line, item, "missing required key 'roles' (write the name alone for all)"
            )
        if name is not None:
            names.append(name)
            if chosen:
                roles.append((name, frozenset(chosen)))
    return tuple(names), tuple(roles)


_TOP = {
    "forward_zones": _forward_zones,
    "networks": _networks,
    "lists": _lists,
    "allowlist": _allowlist,
    "policies": _policies,
}


def _cross_check(r: Reader, config: Config, top: Mapping | None) -> None:
    """References between sections: policies name known networks and lists, once each;
    egress.lists names configured lists."""
    network_names = {n.name for n in config.networks}
    list_names = {item.name for item in config.lists}
    owner: dict[str, str] = {}
    for policy in config.policies:
        path = f"policies.{policy.name}"
        policy_node = get(_as_mapping(get(top, "policies")), policy.name)
        for network_name, line in zip(
            policy.networks, _item_lines(policy_node, "networks"), strict=False
        ):
            if network_name not in network_names:
                r.problem(line, path + ".networks", f"unknown network {network_name!r}")
            elif owner.get(network_name) == policy.name:
                r.problem(line, path + ".networks", f"network {network_name!r} is listed twice")
            elif network_name in owner:
                r.problem(
                    line,
                    path + ".networks",
                    f"network {network_name!r} already belongs to policy {owner[network_name]!r}",
                )
            else:
                owner[network_name] = policy.name
        lines = _item_lines(policy_node, "lists", by_key="list")
        for list_name, line in zip(policy.lists, lines, strict=False):
            if list_name not in list_names:
                r.problem(line, path + ".lists", f"unknown list {list_name!r}")
    networks_node = _as_mapping(get(top, "networks"))
    seen: dict[IPNetwork, str] = {}
    for net in config.networks:
        line = networks_node.items[net.name][0] if networks_node else 0
        if net.name not in owner:
            r.problem(
                line,
                f"networks.{net.name}",
                "no policy covers this network; add it to a policy (lists: [] for none)",
            )
        for prefix in net.prefixes:
            if prefix in seen and seen[prefix] != net.name:
                r.problem(
                    line,
                    f"networks.{net.name}",
                    f"prefix {prefix} is also in network {seen[prefix]!r}",
                )
            seen[prefix] = net.name
    if config.egress.lists is not None:
        lines = _item_lines(get(top, "egress"), "lists")
        for list_name, line in zip(config.egress.lists, lines, strict=False):
            if list_name not in list_names:
                r.problem(line, "egress.lists", f"unknown list {list_name!r}")


def _as_mapping(node: Node | None) -> Mapping | None:
    return node if isinstance(node, Mapping) else None


def _item_lines(node: Node | None, key: str, by_key: str | None = None) -> list[int]:
    """The line of each string item of the list under key: the items Reader.strings yields;
    with by_key, also of each mapping item that names a string under by_key."""
    items = get(_as_mapping(node), key)
    if not isinstance(items, Sequence):
        return []
    lines = []
    for item in items.items:
        child = get(item, by_key) if by_key is not None and isinstance(item, Mapping) else item
        if isinstance(child, Scalar) and (child.quoted or isinstance(child.value, str)):
            lines.append(child.line)
    return lines
