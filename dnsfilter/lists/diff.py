"""`dnsfilter lists diff`: what a change to the lists blocks and unblocks.

A textual diff of the YAML shows moved lines, reworded notes and reflowed descriptions; a
reviewer needs the names added and removed, per list. Both sides are loaded with the real
loader (so a name is compared as dnsfilter matches it: lowercased, punycode), from files or
from git revisions (`git show REV:path`), and compared as sets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dnsfilter.errors import ListError
from dnsfilter.lists.export import canonical_key
from dnsfilter.lists.formats import detect_format, parse_list
from dnsfilter.lists.model import BlockList, DomainEntry, NetworkEntry

EXIT_OK = 0
EXIT_INVALID = 2

#: Where `--git` looks when no PATH is given.
DEFAULT_GIT_PATHS = ("blocklists",)


class DiffError(Exception):
    """A side cannot be read: no such file, revision or path."""


@dataclass(frozen=True, slots=True)
class ModeChange:
    domain: str
    old: str  #: the entry's mode, "" when it follows the policy
    new: str


@dataclass(frozen=True, slots=True)
class SectionDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[ModeChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True, slots=True)
class ListDiff:
    name: str
    old: str  #: where the old side came from; "" when the list did not exist
    new: str  #: likewise for the new side
    domains: SectionDiff = field(default_factory=SectionDiff)
    exceptions: SectionDiff = field(default_factory=SectionDiff)
    networks: SectionDiff = field(default_factory=SectionDiff)

    @property
    def changed(self) -> bool:
        return bool(
            self.domains or self.exceptions or self.networks or not self.old or not self.new
        )


def diff_lists(
    old: BlockList | None, new: BlockList | None, old_label: str = "", new_label: str = ""
) -> ListDiff:
    """Added, removed and re-moded names of two versions of a list (None: absent)."""
    either = new if new is not None else old
    return ListDiff(
        name=either.name if either is not None else "",
        old=old_label if old is not None else "",
        new=new_label if new is not None else "",
        domains=_domains(old.domains if old else (), new.domains if new else (), modes=True),
        exceptions=_domains(old.exceptions if old else (), new.exceptions if new else ()),
        networks=_networks(old.networks if old else (), new.networks if new else ()),
    )


def _domains(
    old: Sequence[DomainEntry], new: Sequence[DomainEntry], modes: bool = False
) -> SectionDiff:
    before = {e.domain: e for e in old}
    after = {e.domain: e for e in new}
    changed = []
    if modes:
        for domain in sorted(before.keys() & after.keys(), key=canonical_key):
            was, now = before[domain].mode, after[domain].mode
            if was is not now:
                changed.append(
                    ModeChange(domain, was.value if was else "", now.value if now else "")
                )
    return SectionDiff(
        added=tuple(sorted(after.keys() - before.keys(), key=canonical_key)),
        removed=tuple(sorted(before.keys() - after.keys(), key=canonical_key)),
        changed=tuple(changed),
    )


def _networks(old: Sequence[NetworkEntry], new: Sequence[NetworkEntry]) -> SectionDiff:
    before = {e.prefix for e in old}
    after = {e.prefix for e in new}

    def ordered(prefixes: set[Any]) -> tuple[str, ...]:
        key = lambda p: (p.version, int(p.network_address), p.prefixlen)  # noqa: E731
        return tuple(str(p) for p in sorted(prefixes, key=key))

    return SectionDiff(added=ordered(after - before), removed=ordered(before - after))


# ---------------------------------------------------------------------------------------
# Reading the sides


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise DiffError("git is not installed") from None
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise DiffError(message[-1] if message else f"git {' '.join(args)} failed")
    return result.stdout


def read_side(spec: str, cwd: Path) -> tuple[str, str]:
    """(label, text) of a file, or of REV:path through `git show` (path as git reads it:
    from the top of the repository, or relative to cwd when it starts with ./)."""
    path = cwd / spec
    if path.is_file():
        try:
            return spec, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DiffError(f"{spec}: cannot read: {exc}") from None
    if ":" in spec:
        return spec, _git(["show", spec], cwd)
    raise DiffError(f"{spec}: no such file (write REV:path for a git revision)")


def git_list_paths(revision: str, paths: Sequence[str], cwd: Path) -> list[str]:
    """The *.yaml files under paths at a revision, as paths from the top of the repository
    (a PATH naming a file of another format is kept too)."""
    out = _git(["ls-tree", "-r", "--name-only", "--full-name", revision, "--", *paths], cwd)
    named = {p.rstrip("/") for p in paths}
    return [
        line
        for line in out.splitlines()
        if line.endswith(".yaml") or line in named or PurePosixPath(line).name in named
    ]


def _load(label: str, text: str) -> BlockList:
    """Any list format, detected from the path and the text as `serve` detects it."""
    format = detect_format(text, label)
    # A YAML list names itself; the other formats are named after their file.
    name = "" if format == "yaml" else PurePosixPath(label.rpartition(":")[2]).stem
    return parse_list(text, label, name, format)


def diff_specs(old: str, new: str, cwd: Path) -> list[ListDiff]:
    old_label, old_text = read_side(old, cwd)
    new_label, new_text = read_side(new, cwd)
    return [diff_lists(_load(old_label, old_text), _load(new_label, new_text), old, new)]


def diff_revisions(old_rev: str, new_rev: str, paths: Sequence[str], cwd: Path) -> list[ListDiff]:
    wanted = list(paths) or list(DEFAULT_GIT_PATHS)
    before = git_list_paths(old_rev, wanted, cwd)
    after = git_list_paths(new_rev, wanted, cwd)
    if not before and not after:
        raise DiffError(f"no *.yaml under {', '.join(wanted)} at {old_rev} or {new_rev}")
    diffs = []
    for path in sorted(set(before) | set(after)):
        sides: list[BlockList | None] = []
        for revision, present in ((old_rev, before), (new_rev, after)):
            label = f"{revision}:{path}"
            sides.append(_load(label, _git(["show", label], cwd)) if path in present else None)
        diffs.append(diff_lists(sides[0], sides[1], f"{old_rev}:{path}", f"{new_rev}:{path}"))
    return diffs


# ---------------------------------------------------------------------------------------
# Output


def render_text(diffs: Sequence[ListDiff]) -> str:
    lines: list[str] = []
    for d in diffs:
        if not d.changed:
            continue
        if lines:
            lines.append("")
        lines.append(f"--- {d.old or '(no list)'}")
        lines.append(f"+++ {d.new or '(no list)'}")
        counts = ", ".join(
            f"+{len(s.added)} -{len(s.removed)} {what}"
            for what, s in (
                ("domains", d.domains),
                ("exceptions", d.exceptions),
                ("networks", d.networks),
            )
        )
        status = " (new list)" if not d.old else " (list removed)" if not d.new else ""
        lines.append(f"list {d.name}{status}: {counts}")
        for what, section in (
            ("domain", d.domains),
            ("exception", d.exceptions),
            ("network", d.networks),
        ):
            lines += [f"+ {what:<9} {item}" for item in section.added]
            lines += [f"- {what:<9} {item}" for item in section.removed]
            lines += [
                f"~ {what:<9} {c.domain}: mode {c.old or '(policy)'} -> {c.new or '(policy)'}"
                for c in section.changed
            ]
    unchanged = sum(1 for d in diffs if not d.changed)
    if lines:
        lines.append("")
    changed = len(diffs) - unchanged
    lines.append(f"{changed} lists changed, {unchanged} unchanged")
    return "\n".join(lines) + "\n"


def render_json(diffs: Sequence[ListDiff]) -> str:
    def section(s: SectionDiff, modes: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"added": list(s.added), "removed": list(s.removed)}
        if modes:
            out["mode_changed"] = [
                {"domain": c.domain, "old": c.old or None, "new": c.new or None} for c in s.changed
            ]
        return out

    document = {
        "lists": [
            {
                "name": d.name,
                "old": d.old or None,
                "new": d.new or None,
                "changed": d.changed,
                "domains": section(d.domains, modes=True),
                "exceptions": section(d.exceptions),
                "networks": section(d.networks),
            }
            for d in diffs
        ]
    }
    return json.dumps(document, indent=2) + "\n"


def diff_command(old: str, new: str, paths: Sequence[str], *, git: bool, fmt: str) -> int:
    cwd = Path.cwd()
    try:
        if git:
            diffs = diff_revisions(old, new, paths, cwd)
        elif paths:
            print(
                "dnsfilter lists diff: PATHs need --git (compare OLD NEW as files or REV:path)",
                file=sys.stderr,
            )
            return EXIT_INVALID
        else:
            diffs = diff_specs(old, new, cwd)
    except DiffError as exc:
        print(f"dnsfilter lists diff: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ListError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(render_json(diffs) if fmt == "json" else render_text(diffs))
    return EXIT_OK
