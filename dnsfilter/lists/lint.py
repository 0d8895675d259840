"""`dnsfilter lists lint`: the mistakes a list can carry that the loader lets through.

The loader rejects what it cannot use (bad names, YAML type traps, unknown keys); lint
reports those messages too, and then what loads but is still wrong: duplicates the loader
drops silently, entries a parent already covers, exceptions that match nothing, public
suffixes, IDN not in punycode, entries without evidence, wide apexes nobody explained.
Findings are `file:line: severity: message`, one a line, in file order (or GitHub
annotations), so CI can point at the line.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema

from dnsfilter.config.yamltree import (
    Mapping,
    Node,
    Scalar,
    YamlSyntaxError,
    get,
    line_of,
    parse,
    to_data,
)
from dnsfilter.config.yamltree import Sequence as YamlSequence
from dnsfilter.errors import ConfigError, ListError
from dnsfilter.lists.formats import detect_format, parse_list
from dnsfilter.lists.yamlformat import parse_yaml_list
from dnsfilter.names import InvalidName, normalize_domain, suffixes

#: Debian's package `publicsuffix` installs the list here.
DEFAULT_PSL = Path("/usr/share/publicsuffix/public_suffix_list.dat")

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INVALID = 2

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_EVIDENCE = re.compile(r"https?://\S+|[\w.-]+/[\w.-]+@\S+")

#: Every kind of finding, for --quiet and --max-per-kind, with what it is about.
KINDS: dict[str, str] = {
    "loader": "what the loader rejects, or skips with a warning",
    "duplicate": "a name written twice",
    "covered": "an entry a parent entry of the list already covers",
    "public-suffix": "an entry that is a public suffix",
    "wide": "a whole registrable domain without a note",
    "known-wide": "a shared platform or a known mistake of app lists (app lists only)",
    "exception": "an exception that matches nothing, equals an entry or silences one",
    "punycode": "an IDN not in punycode, or a name not in its normal spelling",
    "evidence": "missing or malformed evidence, a plain-string entry",
    "field": "an unquoted added date, a name other than the file's stem",
    "network": "overlapping networks",
}

#: Apexes of shared platforms (blocking them takes down unrelated services) and names that
#: public lists carry by mistake; docs/maintainers/evidence.md, "Curation rules" 1, 2 and 7. Advice
#: for lists of one app's names: a general ad list blocks such names on purpose.
KNOWN_WIDE: dict[str, str] = {
    "qq.com": "Tencent's shared apex (QQ Mail, wechat.com updaters): list app-specific names",
    "tencent.com": "Tencent's shared corporate apex: list app-specific names",
    "qpic.cn": "Tencent's shared image CDN: list app-specific names such as mmbiz.qpic.cn",
    "qlogo.cn": "Tencent's shared avatar CDN: list app-specific names",
    "gtimg.com": "Tencent's shared static CDN: list app-specific names such as wx.gtimg.com",
    "myqcloud.com": "Tencent Cloud customers' shared apex",
    "edgekey.net": "Akamai's shared CDN apex: list only app aliases under it",
    "akadns.net": "Akamai's shared DNS apex: list only app aliases under it",
    "cdn.cloudflare.net": "Cloudflare's shared CDN apex: list only app aliases under it",
    "gifshow.com": "Kuaishou, not ByteDance: a known mistake of public TikTok lists",
    "app-measurement.com": "Google Firebase, not an app backend: a known mistake of TikTok lists",
}


class Severity(enum.Enum):
    ERROR = "error"  #: wrong: the list does not do what it says
    WARNING = "warning"  #: legal, but against the curation rules


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int  #: 0 when the problem has no line (an unreadable file)
    severity: Severity
    message: str
    kind: str = "loader"  #: what --quiet names and --max-per-kind counts (see KINDS)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity.value}: {self.message}"

    def github(self) -> str:
        """A GitHub Actions workflow command: an annotation on the file and line."""
        props = f"file={_escape_property(self.file)}"
        if self.line:
            props += f",line={self.line}"
        return f"::{self.severity.value} {props}::{_escape_data(self.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# ---------------------------------------------------------------------------------------
# Public Suffix List


class PublicSuffixList:
    """The PSL's rules (ICANN and private sections), names in punycode.

    A name is a public suffix when a rule names it or a wildcard rule covers it, unless an
    exception rule (`!www.ck`) takes it out; a single label is one by the PSL's implicit `*`.
    """

    def __init__(
        self, rules: Iterable[str], wildcards: Iterable[str] = (), exceptions: Iterable[str] = ()
    ) -> None:
        self.rules = frozenset(rules)
        self.wildcards = frozenset(wildcards)  #: `*.ck` is stored as "ck"
        self.exceptions = frozenset(exceptions)

    @classmethod
    def parse(cls, text: str) -> PublicSuffixList:
        rules: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        for raw in text.splitlines():
            # A rule is the first whitespace-delimited word of a line that is not a comment.
            words = raw.split()
            if not words or words[0].startswith("//"):
                continue
            rule = words[0]
            target = rules
            if rule.startswith("!"):
                target, rule = exceptions, rule[1:]
            elif rule.startswith("*."):
                target, rule = wildcards, rule[2:]
            name = _punycode(rule)
            if name is not None:
                target.add(name)
        return cls(rules, wildcards, exceptions)

    @classmethod
    def load(cls, path: Path) -> PublicSuffixList:
        return cls.parse(path.read_text(encoding="utf-8"))

    def is_public_suffix(self, name: str) -> bool:
        if name in self.exceptions:
            return False
        if name in self.rules:
            return True
        dot = name.find(".")
        if dot < 0:
            return True
        return name[dot + 1 :] in self.wildcards

    def is_apex(self, name: str) -> bool:
        """A registrable domain: one label under a public suffix (example.co.uk)."""
        dot = name.find(".")
        return (
            dot >= 0 and not self.is_public_suffix(name) and self.is_public_suffix(name[dot + 1 :])
        )


def _punycode(rule: str) -> str | None:
    # Encoded as list entries are (IDNA 2008), so the two compare.
    try:
        return normalize_domain(rule)
    except InvalidName:
        return None  # no list entry can match it anyway


# ---------------------------------------------------------------------------------------
# Linting one file


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str  #: normalized
    line: int
    note: str
    section: str  #: "domains" or "exceptions"
    roles: frozenset[str] = frozenset()  #: as written; the loader checks the values


def lint_text(
    text: str, filename: str, psl: PublicSuffixList | None = None, format: str | None = None
) -> list[Finding]:
    """Every finding for one list file's text, in line order (format detected when None)."""
    if (format or detect_format(text, filename)) != "yaml":
        return _lint_other(text, filename, psl, format)
    findings: list[Finding] = []
    try:
        parse_yaml_list(text, filename)
    except ListError as exc:
        findings += [_loader_finding(problem, filename) for problem in exc.problems]
    try:
        root, _ = parse(text, filename)
    except YamlSyntaxError:
        return _in_order(findings)  # the loader's message already says where
    if isinstance(root, Mapping):
        findings += _schema_findings(root, filename, findings)
        _Linter(filename, psl, findings).run(root)
    return _in_order(findings)


@functools.cache
def _list_schema() -> jsonschema.Draft202012Validator:
    text = resources.files("dnsfilter.config").joinpath("schemas/list.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def _schema_findings(root: Mapping, filename: str, loader: Iterable[Finding]) -> list[Finding]:
    """What the shipped JSON Schema (the one editors use) finds about keys and lines the
    loader left alone: the two agree, and a disagreement is itself worth a look. The loader
    may put a problem on the entry's line and the schema on the key's, so both count."""
    loader = list(loader)
    reported = {f.line for f in loader}
    reported_paths = {f.message.partition(": ")[0] for f in loader if f.line}
    out = []
    for error in _leaves(_list_schema().iter_errors(to_data(root))):
        path = list(error.absolute_path)
        if _dotted(path) in reported_paths:
            continue
        line = line_of(root, path)
        if error.validator == "additionalProperties":
            parent = _node_at(root, path)
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            if isinstance(parent, Mapping):
                extra = [k for k in parent.items if k not in known]
                line = parent.items[extra[0]][0] if extra else line
        if line not in reported:
            out.append(Finding(filename, line, Severity.ERROR, f"schema: {error.message}"))
    return out


def _dotted(path: list[str | int]) -> str:
    """A JSON path as the loader writes it: domains[3].mode."""
    return "".join(
        f"[{step}]" if isinstance(step, int) else f".{step}" for step in path
    ).removeprefix(".")


def _leaves(
    errors: Iterable[jsonschema.ValidationError],
) -> Iterator[jsonschema.ValidationError]:
    """An anyOf's failure as the failures of its branch that got furthest into the value."""
    for error in errors:
        if not error.context:
            yield error
            continue
        branches: dict[object, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        best = max(branches.values(), key=lambda b: max(len(e.absolute_path) for e in b))
        yield from _leaves(best)


def _node_at(node: Node | None, path: list[str | int]) -> Node | None:
    for step in path:
        if isinstance(node, Mapping) and isinstance(step, str):
            node = get(node, step)
        elif isinstance(node, YamlSequence) and isinstance(step, int) and step < len(node.items):
            node = node.items[step]
        else:
            return None
    return node


def _in_order(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.line)


def _lint_other(
    text: str, filename: str, psl: PublicSuffixList | None, format: str | None
) -> list[Finding]:
    """hosts, plain, adblock and RPZ lists: the loader's errors and warnings, and the checks
    that need only names (they carry no notes or evidence to check)."""
    try:
        blocklist = parse_list(text, filename, Path(filename).stem or "list", format)
    except ListError as exc:
        return _in_order([_loader_finding(problem, filename) for problem in exc.problems])
    findings = [_loader_finding(w, filename, Severity.WARNING) for w in blocklist.warnings]
    if blocklist.duplicates:
        findings.append(
            Finding(
                filename,
                0,
                Severity.WARNING,
                f"{blocklist.duplicates} duplicate entries (the loader drops them)",
                "duplicate",
            )
        )
    linter = _Linter(
        filename,
        psl,
        findings,
        notes=False,
        important=blocklist.important_domains,
        specific_wins=blocklist.specific_wins,
    )
    domains = [_Entry(e.domain, e.line, e.note, "domains") for e in blocklist.domains]
    exceptions = [_Entry(e.domain, e.line, e.note, "exceptions") for e in blocklist.exceptions]
    linter.exception_names = frozenset(e.name for e in exceptions)
    linter.check_domains(domains)
    linter.check_exceptions(exceptions, domains)
    return _in_order(findings)


def _loader_finding(problem: str, filename: str, severity: Severity = Severity.ERROR) -> Finding:
    rest = problem.removeprefix(filename + ":")
    number, sep, message = rest.partition(":")
    if rest != problem and sep and number.isascii() and number.isdigit():
        return Finding(filename, int(number), severity, message.strip())
    return Finding(filename, 0, severity, rest.strip(" :"))


class _Linter:
    def __init__(
        self,
        filename: str,
        psl: PublicSuffixList | None,
        out: list[Finding],
        notes: bool = True,
        important: frozenset[str] = frozenset(),
        specific_wins: bool = False,
    ) -> None:
        self.filename = filename
        self.psl = psl
        self.out = out
        self.notes = notes  #: the format has notes, so a wide entry can explain itself
        #: a list of one app's names (YAML, an app category): KNOWN_WIDE's advice applies
        self.app_list = False
        self.important = important  #: entries that an exception above does not lift
        self.specific_wins = specific_wins  #: RPZ: an entry below an exception still blocks
        self.exception_names: frozenset[str] = frozenset()

    def add(self, line: int, severity: Severity, message: str, kind: str) -> None:
        self.out.append(Finding(self.filename, line, severity, message, kind))

    def run(self, top: Mapping) -> None:
        self.app_list = _text(get(top, "category")) not in ("", "other", "bypass")
        name = get(top, "name")
        stem = Path(self.filename).stem
        if isinstance(name, Scalar) and name.text and name.text != stem:
            self.add(
                name.line, Severity.WARNING, f"name {name.text!r} is not the file's stem", "field"
            )
        domains = self.entries(get(top, "domains"), "domains")
        exceptions = self.entries(get(top, "exceptions"), "exceptions")
        self.exception_names = frozenset(e.name for e in exceptions)
        self.check_domains(domains)
        self.check_exceptions(exceptions, domains)
        self.check_networks(get(top, "networks"))

    def entries(self, node: Node | None, section: str) -> list[_Entry]:
        out = []
        items = node.items if isinstance(node, YamlSequence) else ()
        for child in items:
            text: str | None = None
            note = ""
            roles: frozenset[str] = frozenset()
            if isinstance(child, Scalar) and (child.quoted or child.tag.endswith(":str")):
                text = child.text
                self.add(
                    child.line,
                    Severity.WARNING,
                    f"{text!r} is a plain string: write a mapping with domain and evidence",
                    "evidence",
                )
            elif isinstance(child, Mapping):
                domain = get(child, "domain")
                if isinstance(domain, Scalar) and (domain.quoted or domain.tag.endswith(":str")):
                    text = domain.text
                note = _text(get(child, "note"))
                roles = _roles(get(child, "role"))
                self.check_fields(child)
                if section == "domains" and self.notes and "role" not in child.items:
                    self.add(
                        child.line,
                        Severity.WARNING,
                        "no role: say what the name is (backend, telemetry, download, ...)",
                        "role",
                    )
            if text is None:
                continue  # the loader reported it
            try:
                normalized = normalize_domain(text)
            except InvalidName:
                continue  # the loader reported it
            if not text.isascii():
                self.add(
                    child.line,
                    Severity.ERROR,
                    f"{text!r} is not in punycode: write {normalized!r}",
                    "punycode",
                )
            elif text != normalized:
                self.add(
                    child.line, Severity.WARNING, f"write {text!r} as {normalized!r}", "punycode"
                )
            out.append(_Entry(normalized, child.line, note, section, roles))
        return out

    def check_fields(self, entry: Mapping) -> None:
        evidence = get(entry, "evidence")
        text = _text(evidence)
        if not text.strip():
            self.add(
                entry.line,
                Severity.WARNING,
                "no evidence: say where this is documented",
                "evidence",
            )
        elif evidence is not None and not _EVIDENCE.fullmatch(text.strip()):
            self.add(
                evidence.line,
                Severity.WARNING,
                f"evidence {text.strip()[:60]!r} is neither a URL nor owner/repo@commit:path",
                "evidence",
            )
        added = get(entry, "added")
        if isinstance(added, Scalar) and added.tag == _TIMESTAMP and not added.quoted:
            self.add(
                added.line,
                Severity.WARNING,
                f"added: {added.text} is read by YAML as a date; quote it",
                "field",
            )

    def check_domains(self, domains: Sequence[_Entry]) -> None:
        first: dict[str, _Entry] = {}
        for entry in domains:
            seen = first.get(entry.name)
            if seen is not None:
                self.add(entry.line, Severity.ERROR, f"duplicate of line {seen.line}", "duplicate")
                continue
            first[entry.name] = entry
        for entry in first.values():
            parent = _closest_parent(entry.name, first)
            # A child with a role its parent lacks still blocks for a policy that
            # enforces only that role: not redundant.
            if (
                parent is not None
                and not self._exception_between(entry.name, parent.name)
                and (not parent.roles or entry.roles <= parent.roles)
            ):
                self.add(
                    entry.line,
                    Severity.WARNING,
                    f"{entry.name} is already covered by {parent.name} (line {parent.line})",
                    "covered",
                )
            self.check_suffix(entry)

    def _exception_between(self, name: str, parent: str) -> bool:
        # An entry below an exception is another rule than its parent (it is either lifted,
        # reported by check_exceptions, or beats the exception: $important, RPZ).
        for between in suffixes(name)[1:]:
            if between == parent:
                return False
            if between in self.exception_names:
                return True
        return False

    def check_suffix(self, entry: _Entry) -> None:
        known = KNOWN_WIDE.get(entry.name) if self.app_list else None
        if known is not None:
            self.add(entry.line, Severity.WARNING, f"{entry.name}: {known}", "known-wide")
        if self.psl is None:
            return
        if self.psl.is_public_suffix(entry.name):
            self.add(
                entry.line,
                Severity.ERROR,
                f"{entry.name} is a public suffix: it blocks every site registered under it",
                "public-suffix",
            )
        elif (
            self.notes and known is None and not entry.note.strip() and self.psl.is_apex(entry.name)
        ):
            self.add(
                entry.line,
                Severity.WARNING,
                f"wide entry: {entry.name} is a whole registrable domain; say in note why "
                "everything under it must go",
                "wide",
            )

    def check_exceptions(self, exceptions: Sequence[_Entry], domains: Sequence[_Entry]) -> None:
        blocking: dict[str, _Entry] = {}
        for entry in domains:
            blocking.setdefault(entry.name, entry)
        first: dict[str, _Entry] = {}
        for entry in exceptions:
            seen = first.get(entry.name)
            if seen is not None:
                self.add(entry.line, Severity.ERROR, f"duplicate of line {seen.line}", "duplicate")
                continue
            first[entry.name] = entry
        for entry in first.values():
            same = blocking.get(entry.name)
            if same is not None:
                self.add(
                    entry.line,
                    Severity.ERROR,
                    f"exception {entry.name} is also an entry (line {same.line}), "
                    "which therefore never blocks",
                    "exception",
                )
                continue
            parent_exception = _closest_parent(entry.name, first)
            if parent_exception is not None:
                self.add(
                    entry.line,
                    Severity.WARNING,
                    f"{entry.name} is already covered by exception {parent_exception.name} "
                    f"(line {parent_exception.line})",
                    "covered",
                )
            elif _closest_parent(entry.name, blocking) is None:
                self.add(
                    entry.line,
                    Severity.ERROR,
                    f"exception {entry.name} matches nothing: no entry of this list above it",
                    "exception",
                )
        # An exception holds for every name below it, so it also silences entries there
        # (but $important ones, and any in a list where the most specific rule wins).
        for entry in blocking.values():
            if self.specific_wins or entry.name in self.important:
                continue
            exception = _closest_parent(entry.name, first)
            if exception is not None:
                self.add(
                    entry.line,
                    Severity.ERROR,
                    f"{entry.name} never blocks: exception {exception.name} "
                    f"(line {exception.line}) covers it",
                    "exception",
                )

    def check_networks(self, node: Node | None) -> None:
        seen: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        items = node.items if isinstance(node, YamlSequence) else ()
        for child in items:
            if not isinstance(child, Mapping):
                continue
            self.check_fields(child)
            text = _text(get(child, "prefix"))
            try:
                prefix = ipaddress.ip_network(text, strict=True)
            except ValueError:
                continue  # the loader reported it
            for other, line in seen:
                if other.version == prefix.version and other.overlaps(prefix):
                    what = "duplicate of" if other == prefix else f"overlaps {other} on"
                    self.add(
                        child.line, Severity.WARNING, f"{prefix} {what} line {line}", "network"
                    )
                    break
            seen.append((prefix, child.line))


def _text(node: Node | None) -> str:
    return node.text if isinstance(node, Scalar) else ""


def _roles(node: Node | None) -> frozenset[str]:
    if isinstance(node, YamlSequence):
        return frozenset(_text(child) for child in node.items)
    return frozenset({_text(node)}) if isinstance(node, Scalar) else frozenset()


def _closest_parent(name: str, entries: dict[str, _Entry]) -> _Entry | None:
    for parent in suffixes(name)[1:]:
        found = entries.get(parent)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------
# The command


class UsageError(Exception):
    """The command line names something that cannot be linted."""


def lint_paths(
    paths: Sequence[Path | tuple[Path, str | None]], psl: PublicSuffixList | None
) -> list[Finding]:
    """Findings of every file; a path may come with its format (else detected)."""
    findings: list[Finding] = []
    for item in paths:
        path, format = item if isinstance(item, tuple) else (item, None)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            findings.append(
                Finding(str(path), 0, Severity.ERROR, f"cannot read: {exc.strerror or exc}")
            )
            continue
        except UnicodeDecodeError as exc:
            findings.append(Finding(str(path), 0, Severity.ERROR, f"not UTF-8: {exc.reason}"))
            continue
        findings += lint_text(text, str(path), psl, format)
    return findings


def expand_paths(
    paths: Sequence[Path], config: Path | None, cwd: Path
) -> list[tuple[Path, str | None]]:
    """The files to lint, with their format when the config gives one: PATHs (directories:
    their *.yaml), else ./blocklists/*.yaml when run from the repository, else the file lists
    of the config (embedded default without one)."""
    if paths:
        out: list[tuple[Path, str | None]] = []
        for path in paths:
            if path.is_dir():
                out += [(p, None) for p in sorted(path.glob("*.yaml"))]
            elif path.exists():
                out.append((path, None))
            else:
                raise UsageError(f"{path}: no such file or directory")
        return out
    repo_lists = sorted((cwd / "blocklists").glob("*.yaml"))
    if repo_lists and config is None:
        return [(p.relative_to(cwd), None) for p in repo_lists]
    from dnsfilter.config import load_config
    from dnsfilter.lists.location import resolve_list_path

    loaded = load_config(config)
    base = config.resolve().parent if config else cwd
    for item in loaded.lists:
        if item.url:
            # Lint is for the files maintainers edit; a downloaded list is someone else's.
            print(f"dnsfilter lists lint: skipping list {item.name}: {item.url}", file=sys.stderr)
    return [(resolve_list_path(item.file, base), item.format) for item in loaded.lists if item.file]


#: Findings of one kind shown per file before the rest are counted in one line.
DEFAULT_MAX_PER_KIND = 20


def capped(findings: Sequence[Finding], max_per_kind: int) -> list[Finding]:
    """The first max_per_kind findings of each kind of each file (0: all), then a line per
    file and kind saying how many more there are."""
    if max_per_kind <= 0:
        return list(findings)
    shown: list[Finding] = []
    seen: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (finding.file, finding.kind)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= max_per_kind:
            shown.append(finding)
    for (file, kind), count in seen.items():
        if count > max_per_kind:
            shown.append(
                Finding(
                    file,
                    0,
                    Severity.WARNING,
                    f"and {count - max_per_kind:,} more {kind!r} findings "
                    f"(--max-per-kind 0 shows them, --quiet {kind} hides the kind)",
                    kind,
                )
            )
    return shown


def lint_command(
    paths: Sequence[Path],
    config: Path | None,
    fmt: str,
    psl_path: Path | None,
    quiet: Sequence[str] = (),
    max_per_kind: int = DEFAULT_MAX_PER_KIND,
) -> int:
    unknown = [kind for kind in quiet if kind not in KINDS]
    if unknown:
        print(
            f"dnsfilter lists lint: --quiet {unknown[0]}: no such kind (kinds: {', '.join(KINDS)})",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        files = expand_paths(paths, config, Path.cwd())
    except UsageError as exc:
        print(f"dnsfilter lists lint: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    psl: PublicSuffixList | None = None
    try:
        psl = PublicSuffixList.load(psl_path or DEFAULT_PSL)
    except OSError as exc:
        if psl_path is not None:
            print(f"{psl_path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_INVALID
        print(
            f"dnsfilter lists lint: public-suffix check skipped: {DEFAULT_PSL} not found "
            "(apt-get install publicsuffix)",
            file=sys.stderr,
        )
    # A quieted kind is neither shown nor counted: the maintainer chose to live with it.
    findings = [f for f in lint_paths(files, psl) if f.kind not in quiet]
    for finding in capped(findings, max_per_kind):
        print(finding.github() if fmt == "github" else str(finding))
    if findings:
        errors = sum(1 for f in findings if f.severity is Severity.ERROR)
        print(
            f"{len(findings):,} findings ({errors:,} errors) in {len(files)} files",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    return EXIT_OK
