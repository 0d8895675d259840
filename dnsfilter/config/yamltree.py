"""YAML read into a tree that remembers lines, with typed accessors that explain mistakes.

Config and list loaders both need `file:line: path: what is wrong` for every problem, all
at once, and must not trust YAML 1.1's guesses (`no` is a boolean, `010` is octal 8,
`null` is nothing). yaml.compose keeps each node's tag, style and start mark; the readers
here turn nodes into Python values and record a problem instead of raising, so a loader
reports everything in one pass.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import yaml

_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9_]*)")


class YamlSyntaxError(Exception):
    """The text is not YAML; the message is ``file:line: reason``."""


@dataclass(frozen=True, slots=True)
class Scalar:
    value: object
    tag: str
    text: str
    quoted: bool
    line: int
    error: str = ""  #: why YAML could not construct the value (e.g. an unknown tag)


@dataclass(frozen=True, slots=True)
class Mapping:
    items: dict[str, tuple[int, Node]]  #: key -> (line of the key, value)
    line: int


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple[Node, ...]
    line: int


Node = Scalar | Mapping | Sequence


#: Collections inside collections, at most. Our files nest a few levels; PyYAML composes
#: recursively (RecursionError past ~300 levels) and scans nested flow collections in time
#: quadratic in their depth (8,000 '[' took 23 s), so a hostile list is stopped here.
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses collections nested deeper than MAX_DEPTH as it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, _TOO_DEEP, mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # The scanner runs up to 1,024 characters ahead of the composer, nesting as it goes:
        # a flow collection ('[' or '{') is stopped here, before the composer sees it.
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, _TOO_DEEP, self.get_mark())
        super().fetch_flow_collection_start(token_class)


_TOO_DEEP = f"collections nested more than {MAX_DEPTH} deep"


#: Nodes that aliases may add to a document beyond the nodes written in it. Anchors save
#: repeating a few lines; without a bound, ten lines of aliases to aliases ("billion
#: laughs") expand to 10**9 nodes, and a list downloaded from a URL is such a text.
MAX_ALIAS_NODES = 100_000


def parse(text: str, filename: str) -> tuple[Node | None, list[str]]:
    """Parse text; return the tree (None for an empty document) and structural problems."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlSyntaxError(f"{filename}:{line}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"{filename}: {exc}") from None
    if root is None:
        return None, []
    _check_aliases(root, filename)
    problems: list[str] = []
    constructor = yaml.constructor.SafeConstructor()
    return _convert(root, constructor, filename, problems), problems


def _check_aliases(root: yaml.Node, filename: str) -> None:
    """Refuse a document whose aliases refer to an enclosing node (it never ends) or
    expand it by more than MAX_ALIAS_NODES nodes. One walk, each node visited once."""
    sizes: dict[int, int] = {}  #: id(node) -> nodes in its expansion (capped)
    open_nodes: set[int] = set()
    cap = 1 << 62  # keeps the sums small ints whatever the nesting
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = min(cap, 1 + sum(sizes[id(child)] for child in children))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise YamlSyntaxError(f"{filename}:{line}: an alias refers to a node that holds it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    if sizes[id(root)] - len(sizes) > MAX_ALIAS_NODES:
        raise YamlSyntaxError(
            f"{filename}: aliases expand the document by more than {MAX_ALIAS_NODES} nodes"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _convert(
    node: yaml.Node,
    constructor: yaml.constructor.SafeConstructor,
    filename: str,
    problems: list[str],
) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        error = ""
        try:
            value = constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            value, error = None, str(exc.problem or exc).splitlines()[0]
        except (yaml.YAMLError, ValueError) as exc:
            value, error = None, str(exc).splitlines()[0]
        # A plain scalar's style is None from the pure parser, "" from libyaml.
        return Scalar(value, node.tag, node.value, bool(node.style), line, error)
    if isinstance(node, yaml.SequenceNode):
        return Sequence(
            tuple(_convert(child, constructor, filename, problems) for child in node.value), line
        )
    assert isinstance(node, yaml.MappingNode)
    items: dict[str, tuple[int, Node]] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(f"{filename}:{key_line}: a mapping key must be a plain name")
            continue
        key = str(key_node.value)
        if key in items:
            problems.append(f"{filename}:{key_line}: duplicate key {key!r}")
            continue
        items[key] = (key_line, _convert(value_node, constructor, filename, problems))
    return Mapping(items, line)


@dataclass
class Reader:
    """Typed reads from a tree; each mistake becomes one line in ``problems``."""

    filename: str
    problems: list[str] = field(default_factory=list)

    def problem(self, line: int, path: str, message: str) -> None:
        where = f"{self.filename}:{line}: "
        self.problems.append(where + (f"{path}: {message}" if path else message))

    def mapping(
        self, node: Node | None, path: str, allowed: frozenset[str] | None = None
    ) -> Mapping | None:
        if node is None:
            return None
        if not isinstance(node, Mapping):
            self.problem(node.line, path, f"expected a mapping (got {_describe(node)})")
            return None
        if allowed is not None:
            for key, (line, _value) in node.items.items():
                if key not in allowed:
                    known = ", ".join(sorted(allowed))
                    self.problem(line, _join(path, key), f"unknown key (known keys: {known})")
        return node

    def sequence(self, node: Node | None, path: str) -> tuple[Node, ...]:
        if node is None:
            return ()
        if isinstance(node, Scalar) and node.tag == _NULL and not node.quoted:
            return ()
        if not isinstance(node, Sequence):
            self.problem(node.line, path, f"expected a list (got {_describe(node)})")
            return ()
        return node.items

    def _unreadable(self, node: Node, path: str) -> bool:
        if isinstance(node, Scalar) and node.error:
            self.problem(node.line, path, f"cannot read {node.text!r} ({node.error})")
            return True
        return False

    def string(self, node: Node | None, path: str) -> str | None:
        if node is None or self._unreadable(node, path):
            return None
        if not isinstance(node, Scalar):
            self.problem(node.line, path, f"expected a string (got {_describe(node)})")
            return None
        if node.tag == _STR or node.quoted:
            return node.text
        self.problem(node.line, path, f"{_trap(node)}; quote it if a string is meant")
        return None

    def date_string(self, node: Node | None, path: str) -> str | None:
        """An ISO date, quoted or not (YAML reads an unquoted one as a date)."""
        if isinstance(node, Scalar) and isinstance(node.value, datetime.date):
            return node.value.isoformat()
        if isinstance(node, Scalar) and node.error and node.tag == _TIMESTAMP:
            self.problem(node.line, path, f"expected an ISO date YYYY-MM-DD (got {node.text!r})")
            return None
        text = self.string(node, path)
        if text is not None and node is not None:
            try:
                datetime.date.fromisoformat(text)
            except ValueError:
                self.problem(node.line, path, f"expected an ISO date YYYY-MM-DD (got {text!r})")
                return None
        return text

    def boolean(self, node: Node | None, path: str) -> bool | None:
        if node is None or self._unreadable(node, path):
            return None
        if isinstance(node, Scalar) and node.tag == _BOOL and not node.quoted:
            if node.text in ("true", "false"):
                return bool(node.value)
            self.problem(node.line, path, f"write true or false (got {node.text!r})")
            return None
        self.problem(node.line, path, f"expected true or false (got {_describe(node)})")
        return None

    def integer(
        self, node: Node | None, path: str, low: int | None = None, high: int | None = None
    ) -> int | None:
        if node is None or self._unreadable(node, path):
            return None
        if not (isinstance(node, Scalar) and node.tag == _INT and not node.quoted):
            self.problem(node.line, path, f"expected a whole number (got {_describe(node)})")
            return None
        if not _DECIMAL.fullmatch(node.text):
            self.problem(
                node.line,
                path,
                f"{node.text!r} is not a plain decimal number (YAML 1.1 reads it as "
                f"{node.value}); write it without a leading zero or prefix",
            )
            return None
        value = int(str(node.value))
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(node.line, path, f"must be between {low} and {high} (got {value})")
            return None
        return value

    def number(
        self,
        node: Node | None,
        path: str,
        above: float | None = None,
        high: float | None = None,
        *,
        at_least: float | None = None,
    ) -> float | None:
        """A float or int: above is an exclusive lower bound, at_least an inclusive one."""
        if node is None or self._unreadable(node, path):
            return None
        if isinstance(node, Scalar) and node.tag == _INT and not node.quoted:
            value = self.integer(node, path)
            if value is None:
                return None
            result = float(value)
        elif isinstance(node, Scalar) and node.tag == _FLOAT and not node.quoted:
            result = float(str(node.value))
        else:
            self.problem(node.line, path, f"expected a number (got {_describe(node)})")
            return None
        too_low = (above is not None and result <= above) or (
            at_least is not None and result < at_least
        )
        if result != result or too_low or (high is not None and result > high):
            if above is not None:
                bounds = f"greater than {above:g}"
            elif at_least is not None:
                bounds = f"at least {at_least:g}"
            else:
                bounds = "a number"
            if high is not None:
                bounds += f" and at most {high:g}"
            self.problem(node.line, path, f"must be {bounds} (got {node.text})")
            return None
        return result

    def strings(self, node: Node | None, path: str) -> Iterator[tuple[int, str, str]]:
        """Each string of a list as (line, path, value); non-strings become problems."""
        for index, child in enumerate(self.sequence(node, path)):
            item_path = f"{path}[{index}]"
            value = self.string(child, item_path)
            if value is not None:
                yield child.line, item_path, value


def by_line(problems: list[str], filename: str) -> list[str]:
    """Problems in file order: `filename:line: ...` sorted by line, stable otherwise."""
    prefix = filename + ":"

    def line_of(problem: str) -> int:
        if problem.startswith(prefix):
            number = problem[len(prefix) :].split(":", 1)[0]
            if number.isascii() and number.isdigit():
                return int(number)
        return 0

    return sorted(problems, key=line_of)


def get(node: Mapping | None, key: str) -> Node | None:
    if node is None:
        return None
    item = node.items.get(key)
    return item[1] if item is not None else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(node: Node) -> str:
    if isinstance(node, Mapping):
        return "a mapping"
    if isinstance(node, Sequence):
        return "a list"
    return _trap(node)


def _trap(node: Scalar) -> str:
    if node.quoted or node.tag == _STR:
        return f"the string {node.text!r}"
    if node.tag == _BOOL:
        return f"{node.text!r}, which YAML reads as the boolean {str(node.value).lower()}"
    if node.tag == _NULL:
        return f"{node.text!r}, which YAML reads as null" if node.text else "nothing"
    if node.tag == _INT:
        return f"{node.text!r}, which YAML reads as the number {node.value}"
    if node.tag == _FLOAT:
        return f"{node.text!r}, which YAML reads as a number"
    if node.tag == _TIMESTAMP:
        return f"{node.text!r}, which YAML reads as a date"
    return repr(node.text)


def to_data(node: Node | None) -> object:
    """The tree as plain JSON-like data, for JSON Schema: dates as ISO text."""
    if isinstance(node, Mapping):
        return {key: to_data(child) for key, (_, child) in node.items.items()}
    if isinstance(node, Sequence):
        return [to_data(child) for child in node.items]
    if node is None:
        return None
    value = node.value
    return value.isoformat() if isinstance(value, datetime.date) else value


def line_of(node: Node | None, path: Iterable[str | int]) -> int:
    """The line of the node a JSON path names (the deepest one that exists)."""
    line = node.line if node is not None else 0
    for step in path:
        if isinstance(node, Mapping) and isinstance(step, str) and step in node.items:
            line, node = node.items[step]
            line = node.line if not isinstance(node, Scalar) else line
        elif isinstance(node, Sequence) and isinstance(step, int) and step < len(node.items):
            node = node.items[step]
            line = node.line
        else:
            break
    return line
