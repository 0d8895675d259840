"""The package map holds: no import circle between dnsfilter's modules, and each package's rules.

The import graph is read from the source with ast; nothing of dnsfilter is imported. Three
kinds of import are told apart:
- module: run when the module is imported (class bodies included);
- function: inside a function, run when it is called; a dependency all the same, and an
  import moved into a function to dodge a circle is still a circle here;
- type-checking: under `if TYPE_CHECKING:`, never run. They are listed apart: the circle
  test over running imports leaves them out, a second test takes them in.
Importing a.b.c also runs a/__init__.py and a/b/__init__.py, so an import of a submodule is
an edge to the packages around it too (except the importer's own packages, which Python has
run already). The rules are those the packages' docstrings state.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dnsfilter

ROOT = Path(dnsfilter.__file__).parent
RUNNING = frozenset({"module", "function"})
ALL_KINDS = RUNNING | {"type-checking"}

#: datapath's pure modules: bytes and values in, bytes and values out, no I/O (STYLE.md).
PURE = tuple(
    f"dnsfilter.datapath.{m}" for m in ("wire", "scrub", "chase", "cache", "policy", "blocking")
)
#: Standard modules that do I/O or run concurrently.
IO = frozenset({"asyncio", "socket", "ssl", "selectors", "threading", "subprocess", "http"})


@dataclass(frozen=True, slots=True)
class Import:
    source: str  #: the importing module
    target: str  #: a dnsfilter module, or the top-level name of any other
    line: int
    kind: str  #: module, function or type-checking
    #: a package run only because a module inside it was imported: the circle tests count
    #: it, the rules do not (they bind what a module names)
    implicit: bool = False

    def __str__(self) -> str:
        package = ", package around the import" if self.implicit else ""
        return f"{self.source} -> {self.target} (line {self.line}, {self.kind}{package})"


def module_paths(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == "TYPE_CHECKING")
        or (isinstance(n, ast.Attribute) and n.attr == "TYPE_CHECKING")
        for n in ast.walk(test)
    )


def _statements(tree: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under tree, with the kind of the place it stands in."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, kind
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), "type-checking")
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), kind)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node, "type-checking" if kind == "type-checking" else "function")
        else:
            yield from _statements(node, kind)


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The dnsfilter module a dotted name is (or lies in)."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def _names(
    node: ast.Import | ast.ImportFrom, source: str, path: Path, modules: dict[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    yield base
    for alias in node.names:  # `from dnsfilter.datapath import cache` names a module
        if f"{base}.{alias.name}" in modules:
            yield f"{base}.{alias.name}"


@functools.cache
def _graph() -> list[Import]:
    return imports(module_paths())


def imports(modules: dict[str, Path]) -> list[Import]:
    """Every import of every dnsfilter module, dnsfilter targets resolved to modules."""
    found: set[Import] = set()
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        own = {source.rsplit(".", i)[0] for i in range(source.count(".") + 1)}
        for node, kind in _statements(tree, "module"):
            for name in _names(node, source, path, modules):
                if name != "dnsfilter" and not name.startswith("dnsfilter."):
                    found.add(Import(source, name.partition(".")[0], node.lineno, kind))
                    continue
                target = _resolve(name, modules)
                # The packages around the target run first, unless they are the importer's.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    ran = ".".join(parts[:i])
                    if ran not in own and ran in modules:
                        found.add(Import(source, ran, node.lineno, kind, ran != target))
    return sorted(found, key=lambda i: (i.source, i.target, i.line, i.kind, i.implicit))


def circles(edges: Iterable[Import], kinds: frozenset[str]) -> list[list[Import]]:
    """The import circles (strongly connected groups of modules), each as its edges."""
    graph: dict[str, list[Import]] = {}
    for edge in edges:
        if edge.kind in kinds and edge.target.startswith("dnsfilter"):
            graph.setdefault(edge.source, []).append(edge)
            graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for edge in graph[v]:
            w = edge.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [[e for m in sorted(g) for e in graph[m] if e.target in g] for g in groups]


def _in(module: str, *places: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in places)


@dataclass(frozen=True, slots=True)
class Rule:
    says: str
    importers: tuple[str, ...]  #: modules or packages the rule binds
    forbidden: tuple[str, ...]  #: what they may not import (dnsfilter modules or top names)
    allowed: tuple[tuple[str, str, str], ...] = ()  #: (importer, target, why) exceptions
    kinds: frozenset[str] = ALL_KINDS
    spared: tuple[str, ...] = ()  #: importers under `importers` the rule does not bind

    def broken_by(self, edges: Iterable[Import]) -> list[Import]:
        return [
            e
            for e in edges
            if e.kind in self.kinds
            and not e.implicit
            and _in(e.source, *self.importers)
            and not _in(e.source, *self.spared)
            and _in(e.target, *self.forbidden)
            and not any(_in(e.source, s) and _in(e.target, t) for s, t, _ in self.allowed)
        ]


RULES = [
    Rule(
        "datapath's pure modules do no I/O: no asyncio, socket or ssl",
        PURE,
        tuple(IO),
    ),
    Rule(
        "only egress imports scapy",
        ("dnsfilter",),
        ("scapy",),
        spared=("dnsfilter.egress",),
    ),
    Rule(
        "egress imports scapy only inside functions: importing dnsfilter never loads it",
        ("dnsfilter.egress",),
        ("scapy",),
        kinds=frozenset({"module"}),
    ),
    Rule(
        "lists, config and datapath never import observe.report, observe.explain or operate",
        ("dnsfilter.lists", "dnsfilter.config", "dnsfilter.yamltree", "dnsfilter.datapath"),
        ("dnsfilter.observe.report", "dnsfilter.observe.explain", "dnsfilter.operate"),
        allowed=(
            (
                "dnsfilter.lists.commands",
                "dnsfilter",
                "`dnsfilter lists ...`: an entry point, wired into the CLI like egress.cli",
            ),
            (
                "dnsfilter.datapath.server",
                "dnsfilter.operate.budget",
                "the listeners' connection slots are drawn on the descriptor budget",
            ),
        ),
    ),
    Rule(
        "config imports no observe, operate, egress or CLI",
        ("dnsfilter.config", "dnsfilter.yamltree"),
        ("dnsfilter.observe", "dnsfilter.operate", "dnsfilter.egress", "dnsfilter.cli"),
    ),
    Rule(
        "datapath imports no egress, lists beyond the model, or observe beyond its counters"
        " and the audit sink",
        ("dnsfilter.datapath",),
        (
            "dnsfilter.egress",
            "dnsfilter.lists",
            "dnsfilter.observe",
            "dnsfilter.cli",
        ),
        allowed=(
            ("dnsfilter.datapath", "dnsfilter.lists.model", "BlockList: what policy matches"),
            ("dnsfilter.datapath", "dnsfilter.observe.metrics", "the counters it bumps"),
            ("dnsfilter.datapath.server", "dnsfilter.observe.querylog", "the audit sink"),
            (
                "dnsfilter.datapath.fastpath",
                "dnsfilter.observe.querylog",
                "the audit events the compiled loop records",
            ),
        ),
    ),
    Rule(
        "observe imports no operate but the budget, and no CLI",
        ("dnsfilter.observe",),
        ("dnsfilter.operate", "dnsfilter.cli"),
        allowed=(
            (
                "dnsfilter.observe.httpserver",
                "dnsfilter.operate.budget",
                "the status endpoint's connection slots are drawn on the descriptor budget",
            ),
        ),
    ),
    Rule(
        "observe.metrics, which every package may import, imports nothing of dnsfilter"
        " but its version",
        ("dnsfilter.observe.metrics",),
        tuple(m for m in module_paths() if m != "dnsfilter"),
    ),
    Rule(
        "operate imports no egress and no CLI",
        ("dnsfilter.operate",),
        ("dnsfilter.egress", "dnsfilter.cli"),
    ),
    Rule(
        "lists imports no observe and no operate (but commands, its CLI), and egress only"
        " for the nftables export",
        ("dnsfilter.lists",),
        ("dnsfilter.observe", "dnsfilter.operate", "dnsfilter.egress", "dnsfilter.cli"),
        allowed=(
            ("dnsfilter.lists.commands", "dnsfilter.observe.explain", "`lists explain`"),
            ("dnsfilter.lists.commands", "dnsfilter.operate.loading", "config and lists"),
            ("dnsfilter.lists.export", "dnsfilter.egress.nftables", "the nftables format"),
            ("dnsfilter.lists.export", "dnsfilter.egress.plan", "the nftables format"),
        ),
    ),
    Rule(
        "egress is imported only by the CLI, lists.export and observe.report",
        ("dnsfilter",),
        ("dnsfilter.egress",),
        allowed=(
            ("dnsfilter.lists.export", "dnsfilter.egress.nftables", "the nftables format"),
            ("dnsfilter.lists.export", "dnsfilter.egress.plan", "the nftables format"),
            ("dnsfilter.observe.report", "dnsfilter.egress.detect", "bypass event kinds"),
        ),
        spared=("dnsfilter.egress", "dnsfilter.cli"),
    ),
    Rule(
        "errors and names are shared by every package and import no other of its modules",
        ("dnsfilter.errors", "dnsfilter.names"),
        tuple(
            m
            for m in module_paths()
            if m not in ("dnsfilter", "dnsfilter.errors", "dnsfilter.names")
        ),
    ),
    Rule(
        "only __main__ imports the CLI",
        ("dnsfilter",),
        ("dnsfilter.cli",),
        spared=("dnsfilter.__main__",),
    ),
]


def test_no_import_circle() -> None:
    found = circles(_graph(), RUNNING)
    assert not found, "import circles (module and function-level imports):\n" + "\n\n".join(
        "\n".join(map(str, c)) for c in found
    )


def test_no_import_circle_even_through_type_checking_imports() -> None:
    found = circles(_graph(), ALL_KINDS)
    assert not found, "import circles through TYPE_CHECKING imports:\n" + "\n\n".join(
        "\n".join(map(str, c)) for c in found
    )


@pytest.mark.parametrize("rule", RULES, ids=[r.says for r in RULES])
def test_package_import_rule(rule: Rule) -> None:
    broken = rule.broken_by(_graph())
    assert not broken, f"{rule.says}:\n" + "\n".join(map(str, broken))


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for package in ("datapath", "lists", "observe", "operate", "egress"):
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
        assert doc, package
        assert "May import" in doc, package


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walk itself: module, function and TYPE_CHECKING imports, packages, circles."""
    package = tmp_path / "dnsfilter"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import socket\n"
        "from dnsfilter.sub import b\n"
        "if TYPE_CHECKING:\n"
        "    from dnsfilter.c import C\n"
    )
    (package / "sub" / "b.py").write_text("def f():\n    from dnsfilter import a\n")
    (package / "c.py").write_text("class K:\n    import dnsfilter.a\n")
    found = imports(module_paths(package))
    assert [str(i) for i in found] == [
        "dnsfilter.a -> dnsfilter.c (line 5, type-checking)",
        "dnsfilter.a -> dnsfilter.sub (line 3, module)",
        "dnsfilter.a -> dnsfilter.sub (line 3, module, package around the import)",
        "dnsfilter.a -> dnsfilter.sub.b (line 3, module)",
        "dnsfilter.a -> socket (line 2, module)",
        "dnsfilter.a -> typing (line 1, module)",
        "dnsfilter.c -> dnsfilter.a (line 2, module)",
        "dnsfilter.sub.b -> dnsfilter.a (line 2, function)",
    ]
    assert [[str(e) for e in c] for c in circles(found, RUNNING)] == [
        [
            "dnsfilter.a -> dnsfilter.sub.b (line 3, module)",
            "dnsfilter.sub.b -> dnsfilter.a (line 2, function)",
        ]
    ]
    assert len(circles(found, ALL_KINDS)) == 1
    assert len(circles(found, ALL_KINDS)[0]) == 4
