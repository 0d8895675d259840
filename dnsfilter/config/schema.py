"""The vocabulary the config and the YAML list format are declared in.

A key is declared once, as a dataclass field made by :func:`key`: its kind (type and
bounds), its default and one line of doc. Three things are derived from those declarations:
the loader (each kind reads its YAML node with yamltree's exact messages), the JSON Schemas
(:meth:`Kind.json`) and the reference table in docs/reference/config.md (:func:`rows`).
This module imports nothing of dnsfilter but yamltree, so the list format can use it too.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dnsfilter.config.yamltree import Mapping, Node, Reader, Scalar, Sequence

JSON = dict[str, Any]
_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)


class _Invalid:
    """What a kind returns for a value it reported as wrong: the default stays."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
#: A Key's default when it has none (a required key).
NO_DEFAULT: Any = type("NoDefault", (), {"__repr__": lambda self: "NO_DEFAULT"})()


@dataclass(frozen=True, slots=True)
class At:
    """Where a value is read: the reader, the mapping holding the key, and the key's path."""

    reader: Reader
    parent: Mapping
    key: str
    path: str
    base: Path | None = None  #: the config file's directory: relative paths start there

    @property
    def key_line(self) -> int:
        return self.parent.items[self.key][0]

    def problem(self, line: int, message: str, path: str | None = None) -> None:
        self.reader.problem(line, self.path if path is None else path, message)


class Kind:
    """A key's type: how it is read from YAML, shown in the docs and checked by JSON Schema."""

    type_name = "string"

    def read(self, node: Node, at: At) -> Any:
        """The value, or INVALID once a problem is recorded."""
        raise NotImplementedError(type(self).__name__)

    def json(self) -> JSON:
        return {"type": "string"}

    def bounds(self) -> str:
        return ""


def _got(value: object) -> Any:
    return INVALID if value is None else value


class Bool(Kind):
    type_name = "boolean"

    def read(self, node: Node, at: At) -> Any:
        return _got(at.reader.boolean(node, at.path))

    def json(self) -> JSON:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Int(Kind):
    low: int
    high: int
    type_name = "integer"

    def read(self, node: Node, at: At) -> Any:
        return _got(at.reader.integer(node, at.path, self.low, self.high))

    def json(self) -> JSON:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def bounds(self) -> str:
        return f"{self.low:_} .. {self.high:_}".replace("_", ",")


@dataclass(frozen=True)
class Number(Kind):
    """above: exclusive lower bound; at_least: inclusive one."""

    high: float
    above: float | None = None
    at_least: float | None = None
    type_name = "number"

    def read(self, node: Node, at: At) -> Any:
        return _got(at.reader.number(node, at.path, self.above, self.high, at_least=self.at_least))

    def json(self) -> JSON:
        schema: JSON = {"type": "number", "maximum": self.high}
        if self.above is not None:
            schema["exclusiveMinimum"] = self.above
        if self.at_least is not None:
            schema["minimum"] = self.at_least
        return schema

    def bounds(self) -> str:
        low = f"({self.above:g}" if self.above is not None else f"[{self.at_least:g}"
        return f"{low} .. {self.high:g}]"


class Str(Kind):
    def read(self, node: Node, at: At) -> Any:
        return _got(at.reader.string(node, at.path))


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few words; `got` adds what was written to the message."""

    values: tuple[str, ...]
    got: bool = True
    lower: bool = False  #: matched case-insensitively, kept in lower case
    value_line: bool = False  #: the problem is on the value's line, not the key's

    def read(self, node: Node, at: At) -> Any:
        text = at.reader.string(node, at.path)
        if text is None:
            return INVALID
        if (text.lower() if self.lower else text) not in self.values:
            message = f"must be one of {', '.join(self.values)}"
            at.problem(
                node.line if self.value_line else at.key_line, message + _said(text, self.got)
            )
            return INVALID
        return text.lower() if self.lower else text

    def json(self) -> JSON:
        return {"enum": list(self.values)}

    def bounds(self) -> str:
        return " \\| ".join(self.values)


def _said(text: str, got: bool) -> str:
    return f" (got {text!r})" if got else ""


@dataclass(frozen=True)
class Mode(Kind):
    """A blocking mode; an unquoted `null` is YAML's null but also a mode's name."""

    modes: type[enum.Enum]
    exclude: tuple[str, ...] = ()  #: modes the JSON Schema leaves out (the loader explains)

    def read(self, node: Node, at: At) -> Any:
        return _got(read_enum(at.reader, node, at.path, self.modes))

    def json(self) -> JSON:
        values = [m.value for m in self.modes if m.value not in self.exclude]
        return {"enum": [*values, None]}

    def bounds(self) -> str:
        return " \\| ".join(m.value for m in self.modes if m.value not in self.exclude)


def read_enum(reader: Reader, node: Node | None, path: str, modes: type[_E]) -> _E | None:
    if node is None:
        return None
    if isinstance(node, Scalar) and not node.quoted and node.text == "null":
        return modes("null")
    text = reader.string(node, path)
    if text is None:
        return None
    try:
        return modes(text)
    except ValueError:
        known = ", ".join(m.value for m in modes)
        reader.problem(node.line, path, f"unknown mode {text!r} ({known})")
        return None


@dataclass(frozen=True)
class Roles(Kind):
    """One role (`role: backend`) or several (`role: [backend, download]`)."""

    roles: type[enum.Enum]
    type_name = "role or list of roles"

    def read(self, node: Node, at: At) -> Any:
        return read_roles(at.reader, node, at.path, self.roles)

    def json(self) -> JSON:
        one = {"enum": [r.value for r in self.roles]}
        many = {"type": "array", "items": one, "minItems": 1, "uniqueItems": True}
        return {"anyOf": [one, many]}

    def bounds(self) -> str:
        return " ".join(r.value for r in self.roles)


def read_roles(reader: Reader, node: Node | None, path: str, roles: type[_E]) -> tuple[_E, ...]:
    if node is None:
        return ()
    if isinstance(node, Scalar):
        items: list[tuple[int, str, str]] = []
        text = reader.string(node, path)
        if text is not None:
            items.append((node.line, path, text))
    elif isinstance(node, Sequence):
        if not node.items:
            reader.problem(node.line, path, "needs at least one role")
        items = list(reader.strings(node, path))
    else:
        reader.problem(node.line, path, "expected a role or a list of roles (got a mapping)")
        return ()
    out: list[_E] = []
    for line, item_path, text in items:
        try:
            role = roles(text)
        except ValueError:
            known = ", ".join(r.value for r in roles)
            reader.problem(line, item_path, f"unknown role {text!r} ({known})")
            continue
        if role in out:
            reader.problem(line, item_path, f"role {text!r} is given twice")
            continue
        out.append(role)
    return tuple(out)


@dataclass(frozen=True)
class Shape(Kind):
    """A kind the loader reads by hand (cross-key rules); declared for the schema and docs."""

    schema: JSON
    type_name: str = "string"
    limits: str = ""

    def json(self) -> JSON:
        return self.schema

    def bounds(self) -> str:
        return self.limits


def nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def strings(item: JSON | None = None, min_items: int = 0) -> JSON:
    schema: JSON = {"type": "array", "items": item or {"type": "string"}}
    if min_items:
        schema["minItems"] = min_items
    return schema


# ---------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    kind: Kind
    doc: str
    default: Any = NO_DEFAULT
    shown: str = ""  #: the default as the docs show it, when repr is not it
    required: bool = False
    factory: bool = False  #: the default is computed (from the environment, or a section)


def key(kind: Kind, default: Any, doc: str, *, shown: str = "", factory: bool = False) -> Any:
    """A dataclass field that is also a YAML key; factory: default is a callable."""
    meta = {"key": Key("", kind, doc, shown=shown, factory=factory)}
    if factory:
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def keys_of(cls: type) -> tuple[Key, ...]:
    """The YAML keys of a dataclass: its fields made by key(), in order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("key")
        if spec is None:
            continue
        default: Any = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append(dataclasses.replace(spec, name=f.name, default=default))
    return tuple(out)


def obj(keys: tuple[Key, ...], description: str = "") -> JSON:
    """A JSON Schema object of these keys: no others, the required ones required."""
    schema: JSON = {"type": "object", "additionalProperties": False, "properties": {}}
    if description:
        schema["description"] = description
    for k in keys:
        prop = dict(k.kind.json())
        prop["description"] = k.doc
        shaped = isinstance(k.kind, Named | Section)
        if k.default is not NO_DEFAULT and k.default != "" and not k.factory and not shaped:
            prop["default"] = _plain(k.default)
        schema["properties"][k.name] = prop
    required = [k.name for k in keys if k.required]
    if required:
        schema["required"] = required
    return schema


@dataclass(frozen=True)
class Section(Kind):
    """A mapping of keys: one of the config's dataclasses, read key by key."""

    cls: type
    first: tuple[str, ...] = ()  #: keys read before the others (their problems come first)
    type_name = "mapping"

    def keys(self) -> tuple[Key, ...]:
        return keys_of(self.cls)

    def read(self, node: Node, at: At) -> Any:
        mapping = at.reader.mapping(node, at.path, frozenset(k.name for k in self.keys()))
        if mapping is None:
            return INVALID
        names = [*self.first, *(k.name for k in self.keys() if k.name not in self.first)]
        value = self.cls(**read_values(self.cls, mapping, at, names))
        check: Callable[[], Iterator[str]] | None = getattr(value, "problems", None)
        for message in check() if check else ():
            at.problem(mapping.line, message)
        return value

    def json(self) -> JSON:
        return obj(self.keys())


def read_values(cls: type, mapping: Mapping, at: At, names: Iterable[str]) -> dict[str, Any]:
    """The values of the named keys of cls present in mapping, read in that order; wrong
    ones are reported and left out (so they keep their default)."""
    keys = {k.name: k for k in keys_of(cls)}
    values: dict[str, Any] = {}
    for k in (keys[name] for name in names):
        if k.name in mapping.items:
            path = f"{at.path}.{k.name}" if at.path else k.name
            node = mapping.items[k.name][1]
            value = k.kind.read(node, At(at.reader, mapping, k.name, path, at.base))
            if value is not INVALID:
                values[k.name] = value
    return values


@dataclass(frozen=True)
class Named(Kind):
    """name -> entry: networks, lists, policies, forward zones (the loader reads them)."""

    entry: Kind | type
    key_doc: str = "a name: letters, digits, '.', '-' and '_'"
    pattern: str | None = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    type_name = "mapping of names"

    def entry_json(self) -> JSON:
        return self.entry.json() if isinstance(self.entry, Kind) else obj(keys_of(self.entry))

    def json(self) -> JSON:
        schema: JSON = {"type": "object", "additionalProperties": self.entry_json()}
        if self.pattern:
            schema["propertyNames"] = {"pattern": self.pattern}
        return nullable(schema)


def _plain(value: object) -> Any:
    """A default as JSON: enums by value, addresses and prefixes as text."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


# ---------------------------------------------------------------------------------------
# The reference table


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    type: str
    default: str
    bounds: str
    doc: str


def rows(cls: type, prefix: str = "") -> Iterator[Row]:
    """A row per key of cls, sections and named entries unfolded."""
    for k in keys_of(cls):
        path = f"{prefix}{k.name}"
        kind = k.kind
        if isinstance(kind, Section):
            yield Row(path, "mapping", "", "", k.doc)
            yield from rows(kind.cls, path + ".")
        elif isinstance(kind, Named) and not isinstance(kind.entry, Kind):
            yield Row(path, kind.type_name, "{}", "", k.doc)
            yield from rows(kind.entry, f"{path}.NAME.")
        else:
            shown = "{}" if isinstance(kind, Named) else shown_default(k)
            yield Row(path, kind.type_name, shown, kind.bounds(), k.doc)


def shown_default(k: Key) -> str:
    if k.shown:
        return k.shown
    value = k.default
    if value is NO_DEFAULT:
        return "(required)" if k.required else ""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(_plain(v)) for v in value) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if value < 1e6 else f"{value:g}"
    return str(value)
