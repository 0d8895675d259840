"""dnsfilter's own list format: YAML with evidence per entry (schema in blocklists/README.md)."""

from __future__ import annotations

import ipaddress
import re

from dnsfilter.blocking import BlockMode
from dnsfilter.errors import ListError
from dnsfilter.lists.model import BlockList, Category, DomainEntry, NetworkEntry, Reference
from dnsfilter.names import InvalidName, normalize_domain
from dnsfilter.yamltree import (
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

_LIST_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_TOP_KEYS = frozenset(
    {
        "name",
        "title",
        "vendor",
        "category",
        "description",
        "references",
        "domains",
        "exceptions",
        "networks",
    }
)
_ENTRY_KEYS = frozenset({"domain", "note", "evidence", "added", "mode"})
_EXCEPTION_KEYS = _ENTRY_KEYS - {"mode"}
_NETWORK_KEYS = frozenset({"prefix", "note", "evidence"})
_REFERENCE_KEYS = frozenset({"url", "title"})
_REQUIRED = ("name", "title", "vendor", "category", "description", "references", "domains")


def parse_yaml_list(text: str, filename: str) -> BlockList:
    """Read a list; raise ListError naming file:line for every problem found."""
    try:
        root, problems = parse(text, filename)
    except YamlSyntaxError as exc:
        raise ListError([str(exc)]) from None
    reader = Reader(filename, problems)
    top = reader.mapping(root, "", _TOP_KEYS) if root is not None else None
    if top is None:
        if root is None:
            reader.problem(1, "", "the file is empty; a list needs name, title, ... domains")
        raise ListError(by_line(reader.problems, filename))
    for key in _REQUIRED:
        if key not in top.items:
            reader.problem(top.line, "", f"missing required key {key!r}")

    name = reader.string(get(top, "name"), "name") or ""
    if name and not _LIST_NAME.fullmatch(name):
        reader.problem(_line(top, "name"), "name", f"use a-z, 0-9, - and _ (got {name!r})")
    category = Category.OTHER
    category_text = reader.string(get(top, "category"), "category")
    if category_text is not None:
        try:
            category = Category(category_text)
        except ValueError:
            known = ", ".join(c.value for c in Category)
            reader.problem(
                _line(top, "category"), "category", f"unknown category {category_text!r} ({known})"
            )
    list_title = reader.string(get(top, "title"), "title") or ""
    vendor = reader.string(get(top, "vendor"), "vendor") or ""
    description = reader.string(get(top, "description"), "description") or ""
    references = []
    reference_nodes = reader.sequence(get(top, "references"), "references")
    references_node = get(top, "references")
    if isinstance(references_node, Sequence) and not references_node.items:
        reader.problem(
            _line(top, "references"), "references", "needs at least one public source (url, title)"
        )
    for index, node in enumerate(reference_nodes):
        path = f"references[{index}]"
        ref = reader.mapping(node, path, _REFERENCE_KEYS)
        url = reader.string(get(ref, "url"), path + ".url")
        title = reader.string(get(ref, "title"), path + ".title")
        if ref is not None and (url is None or title is None):
            reader.problem(ref.line, path, "a reference needs url and title")
        references.append(Reference(url or "", title or ""))

    domains, duplicates = _entries(reader, get(top, "domains"), "domains", _ENTRY_KEYS)
    exceptions, _ = _entries(reader, get(top, "exceptions"), "exceptions", _EXCEPTION_KEYS)
    networks = _networks(reader, get(top, "networks"))
    if reader.problems:
        raise ListError(by_line(reader.problems, filename))
    return BlockList(
        name=name,
        source=filename,
        title=list_title,
        vendor=vendor,
        category=category,
        description=description,
        references=tuple(references),
        domains=domains,
        exceptions=exceptions,
        networks=networks,
        duplicates=duplicates,
    )


def _line(mapping: Mapping, key: str) -> int:
    return mapping.items[key][0] if key in mapping.items else mapping.line


def _entries(
    reader: Reader, node: Node | None, section: str, allowed: frozenset[str]
) -> tuple[tuple[DomainEntry, ...], int]:
    entries: dict[str, DomainEntry] = {}
    duplicates = 0
    for index, child in enumerate(reader.sequence(node, section)):
        path = f"{section}[{index}]"
        if isinstance(child, Mapping):
            reader.mapping(child, path, allowed)
            text = reader.string(get(child, "domain"), path + ".domain")
            if "domain" not in child.items:
                reader.problem(child.line, path, "missing required key 'domain'")
            note = reader.string(get(child, "note"), path + ".note") or ""
            evidence = reader.string(get(child, "evidence"), path + ".evidence") or ""
            added = reader.date_string(get(child, "added"), path + ".added") or ""
            mode = read_mode(reader, get(child, "mode"), path + ".mode")
            if mode is BlockMode.SINKHOLE:
                # Sinkhole addresses belong to a policy; an entry cannot carry its own.
                reader.problem(
                    child.line, path + ".mode", "sinkhole is a policy mode, not an entry mode"
                )
                mode = None
        else:
            text = reader.string(child, path)
            note = evidence = added = ""
            mode = None
        if text is None:
            continue
        try:
            domain = normalize_domain(text)
        except InvalidName as exc:
            reader.problem(child.line, path, str(exc))
            continue
        if domain in entries:
            duplicates += 1
            continue
        entries[domain] = DomainEntry(domain, child.line, note, evidence, added, mode)
    return tuple(entries.values()), duplicates


def read_mode(reader: Reader, node: Node | None, path: str) -> BlockMode | None:
    """A blocking mode; an unquoted `null` is YAML's null but also our mode's name."""
    if node is None:
        return None
    if isinstance(node, Scalar) and not node.quoted and node.text == "null":
        return BlockMode.NULL
    text = reader.string(node, path)
    if text is None:
        return None
    try:
        return BlockMode(text)
    except ValueError:
        known = ", ".join(m.value for m in BlockMode)
        reader.problem(node.line, path, f"unknown mode {text!r} ({known})")
        return None


def _networks(reader: Reader, node: Node | None) -> tuple[NetworkEntry, ...]:
    out = []
    for index, child in enumerate(reader.sequence(node, "networks")):
        path = f"networks[{index}]"
        entry = reader.mapping(child, path, _NETWORK_KEYS)
        text = reader.string(get(entry, "prefix"), path + ".prefix")
        if entry is not None and "prefix" not in entry.items:
            reader.problem(entry.line, path, "missing required key 'prefix'")
        if text is None:
            continue
        try:
            prefix = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            reader.problem(child.line, path + ".prefix", str(exc))
            continue
        out.append(
            NetworkEntry(
                prefix,
                child.line,
                reader.string(get(entry, "note"), path + ".note") or "",
                reader.string(get(entry, "evidence"), path + ".evidence") or "",
            )
        )
    return tuple(out)
