"""dnsfilter's own list format: YAML with evidence per entry (docs/maintainers/list-format.md)."""

from __future__ import annotations

import ipaddress
import re

from dnsfilter.config.schema import Choice, Key, Mode, Roles, Shape, Str, obj, read_enum, strings
from dnsfilter.config.schema import read_roles as schema_read_roles
from dnsfilter.config.yamltree import (
    Mapping,
    Node,
    Reader,
    Sequence,
    YamlSyntaxError,
    by_line,
    get,
    parse,
)
from dnsfilter.datapath.blocking import BlockMode
from dnsfilter.errors import ListError
from dnsfilter.lists.model import (
    BlockList,
    Category,
    DomainEntry,
    NetworkEntry,
    Reference,
    RejectedEntry,
    Role,
)
from dnsfilter.names import InvalidName, normalize_domain, suffixes

_LIST_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DATE = Shape({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}, "date", "YYYY-MM-DD")
_TEXT = Str()

# The format, declared once: the loader takes its keys from here, and the JSON Schema
# (dnsfilter/config/schemas/list.schema.json) is generated from it.
ENTRY = (
    Key("domain", _TEXT, "the name; every name below it is blocked too", required=True),
    Key("role", Roles(Role), "what the name is: one role or a list of them"),
    Key("note", _TEXT, "why it is listed (a wide entry says why everything under it goes)"),
    Key("evidence", _TEXT, "where it is documented: a URL, or owner/repo@commit:path"),
    Key("added", _DATE, "when it was added (quoted)"),
    Key("mode", Mode(BlockMode, exclude=("sinkhole",)), "this entry's blocking mode"),
)
# An exception is never blocked, so it has neither a blocking mode nor a role to choose.
EXCEPTION = tuple(k for k in ENTRY if k.name not in ("mode", "role"))
REJECTED = (
    Key("domain", _TEXT, "a name a source lists that this list does not block", required=True),
    Key("reason", _TEXT, "why it is not blocked", required=True),
    Key("source", _TEXT, "the source that lists it", required=True),
    Key("added", _DATE, "when it was rejected (quoted)"),
)
NETWORK = (
    Key("prefix", _TEXT, "an IP prefix the backend is seen on", required=True),
    Key("note", _TEXT, "what it is"),
    Key("evidence", _TEXT, "where it is documented"),
)
REFERENCE = (
    Key("url", _TEXT, "a public source", required=True),
    Key("title", _TEXT, "what it is", required=True),
)


def _items(keys: tuple[Key, ...], strings_too: bool = True, at_least: int = 0) -> Shape:
    item = obj(keys)
    schema = strings({"anyOf": [{"type": "string"}, item]} if strings_too else item, at_least)
    return Shape(schema, "list")


LIST = (
    Key(
        "name",
        Shape({"type": "string", "pattern": f"^{_LIST_NAME.pattern}$"}),
        "the list's name: the file's stem",
        required=True,
    ),
    Key("title", _TEXT, "what people call the app or product", required=True),
    Key("vendor", _TEXT, "who makes it", required=True),
    Key("category", Choice(tuple(c.value for c in Category)), "what kind it is", required=True),
    Key("description", _TEXT, "what it is and why it is listed", required=True),
    Key("references", _items(REFERENCE, False, 1), "public sources", required=True),
    Key("domains", _items(ENTRY), "the names blocked", required=True),
    Key("exceptions", _items(EXCEPTION), "names below an entry that keep resolving"),
    Key("networks", _items(NETWORK, False), "IP prefixes whose answers are blocked"),
    Key("rejected", _items(REJECTED, False), "names considered and not blocked"),
)
_TOP_KEYS = frozenset(k.name for k in LIST)
_ENTRY_KEYS = frozenset(k.name for k in ENTRY)
_EXCEPTION_KEYS = frozenset(k.name for k in EXCEPTION)
_REJECTED_KEYS = frozenset(k.name for k in REJECTED)
_NETWORK_KEYS = frozenset(k.name for k in NETWORK)
_REFERENCE_KEYS = frozenset(k.name for k in REFERENCE)
_REQUIRED = tuple(k.name for k in LIST if k.required)


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
    rejected = _rejected(reader, get(top, "rejected"), domains, exceptions)
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
        rejected=rejected,
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
            roles = read_roles(reader, get(child, "role"), path + ".role")
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
            roles = ()
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
        entries[domain] = DomainEntry(domain, child.line, note, evidence, added, mode, roles)
    return tuple(entries.values()), duplicates


def read_mode(reader: Reader, node: Node | None, path: str) -> BlockMode | None:
    """A blocking mode; an unquoted `null` is YAML's null but also our mode's name."""
    return read_enum(reader, node, path, BlockMode)


def read_roles(reader: Reader, node: Node | None, path: str) -> tuple[Role, ...]:
    """One role (`role: backend`) or several (`role: [backend, download]`)."""
    return schema_read_roles(reader, node, path, Role)


def _rejected(
    reader: Reader,
    node: Node | None,
    domains: tuple[DomainEntry, ...],
    exceptions: tuple[DomainEntry, ...],
) -> tuple[RejectedEntry, ...]:
    """Names the curator chose not to block: each needs a reason and the source that
    named it, and must not be blocked by the list anyway (the record would then lie)."""
    blocking = {e.domain: e for e in domains}
    excepted = {e.domain for e in exceptions}
    out: dict[str, RejectedEntry] = {}
    for index, child in enumerate(reader.sequence(node, "rejected")):
        path = f"rejected[{index}]"
        if not isinstance(child, Mapping):
            reader.problem(
                child.line, path, "a rejected name is a mapping with domain, reason and source"
            )
            continue
        reader.mapping(child, path, _REJECTED_KEYS)
        for key in ("domain", "reason", "source"):
            if key not in child.items:
                reader.problem(child.line, path, f"missing required key {key!r}")
        text = reader.string(get(child, "domain"), path + ".domain")
        reason = reader.string(get(child, "reason"), path + ".reason") or ""
        source = reader.string(get(child, "source"), path + ".source") or ""
        added = reader.date_string(get(child, "added"), path + ".added") or ""
        if "reason" in child.items and not reason.strip():
            reader.problem(child.line, path + ".reason", "say why the name is not blocked")
        if text is None:
            continue
        try:
            domain = normalize_domain(text)
        except InvalidName as exc:
            reader.problem(child.line, path + ".domain", str(exc))
            continue
        if domain in out:
            first = out[domain].line
            reader.problem(child.line, path, f"{domain} is already rejected (line {first})")
            continue
        for suffix in suffixes(domain):
            if suffix in excepted:
                break
            entry = blocking.get(suffix)
            if entry is not None:
                where = "is" if suffix == domain else "is under"
                reader.problem(
                    child.line,
                    path,
                    f"{domain} {where} domains entry {suffix} (line {entry.line}), "
                    "so the list blocks it: drop the rejection or the entry",
                )
                break
        out[domain] = RejectedEntry(domain, child.line, reason, source, added)
    return tuple(out.values())


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
