"""What the line-oriented formats (hosts, plain, adblock, RPZ) share: names and problem reports.

Lists in these formats come from outside and can hold a million lines, nearly all of them
one plain lowercase name in the format's simplest spelling. `read_lines` takes whole runs
of such lines with one regular expression match and one split, and hands every other line
to the format's own per-line reader, which checks a name with one regular expression and
only calls `normalize_domain` (IDNA, exact reasons) when that cheap check fails.
"""

from __future__ import annotations

import functools
import gc
import io
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import ParamSpec, TypeVar

from dnsfilter.errors import ListError
from dnsfilter.lists.model import BlockList, DomainEntry, LineEntries
from dnsfilter.names import InvalidName, normalize_domain

#: Problems of each kind kept per file; a wrong-format file would otherwise report every line.
MAX_REPORTED = 100

# Two or more lowercase labels, each 1-63 characters: what nearly every line of a list holds.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_FAST_NAME = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}")

#: Names hosts files carry for the machine itself; never blocklist entries.
LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "localdomain",
        "broadcasthost",
        "0.0.0.0",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
    }
)

#: A line check_name takes as it is, with its newline: what `simple_lines` patterns are
#: made of. Every condition of check_name's fast branch is here (the length as a
#: lookahead), and the local names are left to the per-line reader, which skips them.
SIMPLE_NAME_LINE = (
    rf"(?!(?:{'|'.join(map(re.escape, sorted(LOCAL_NAMES)))})\n)"
    rf"(?=[^\n]{{1,253}}\n)(?:{_LABEL}\.)++{_LABEL}(?<![0-9])\n"
)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def gc_paused(parse: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run parse with the cyclic garbage collector off.

    A million new entry objects set off a full collection again and again as the heap
    grows (measured: 1.5 s against 0.5 s to build a million entries); parsers make no
    reference cycles, so nothing is lost by collecting once afterwards instead.
    """

    @functools.wraps(parse)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not gc.isenabled():  # another thread is parsing, or the caller paused it
            return parse(*args, **kwargs)
        gc.disable()
        try:
            return parse(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) from 1; each line keeps its newline.

    Lines are made one at a time: text.splitlines() would hold a second copy of a
    million-line list (about 80 MB) while the entries are being built.
    """
    return enumerate(io.StringIO(text), 1)


class LineReport:
    """Errors and warnings of one file as ``file:line: message``, at most MAX_REPORTED each.

    An error is a line that cannot be read at all. Lists in these formats come from
    outside, often from a feed that changes daily, so such a line is skipped (and counted)
    rather than failing the list; only a file with no readable entry fails (see finish).
    """

    __slots__ = ("_errors", "_warnings", "error_count", "filename", "warning_count")

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._errors: list[tuple[int, str]] = []
        self._warnings: list[tuple[int, str]] = []
        self.error_count = 0
        self.warning_count = 0

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if self.error_count <= MAX_REPORTED:
            self._errors.append((line, message))

    def warn(self, line: int, message: str) -> None:
        self.warning_count += 1
        if self.warning_count <= MAX_REPORTED:
            self._warnings.append((line, message))

    def raise_errors(self) -> None:
        """Raise ListError if any error was reported."""
        if self.error_count:
            raise ListError(self._lines(self._errors, self.error_count, "errors"))

    def warnings(self) -> tuple[str, ...]:
        """Every warning, and every error as a skipped line, in line order."""
        skipped = [(line, f"{message}; line skipped") for line, message in self._errors]
        lines = self._lines([*skipped, *self._warnings], 0, "")
        if self.error_count > MAX_REPORTED:
            lines.append(f"{self.filename}: {self.error_count - MAX_REPORTED} more skipped lines")
        if self.warning_count > MAX_REPORTED:
            lines.append(
                f"{self.filename}: {self.warning_count - MAX_REPORTED} more warnings not shown"
            )
        return tuple(lines)

    def _lines(self, problems: list[tuple[int, str]], count: int, kind: str) -> list[str]:
        # Sorted: a format may find a problem only once the whole file is read (RPZ pairs).
        lines = [
            f"{self.filename}:{line}: {message}" for line, message in sorted(problems, key=_line)
        ]
        if count > MAX_REPORTED:
            lines.append(f"{self.filename}: {count - MAX_REPORTED} more {kind} not shown")
        return lines


def check_name(token: str, line: int, report: LineReport) -> str | None:
    """The normalized name, or None when the token is reported (error) or skipped (warning).

    Local names (localhost, ...) are skipped silently: every hosts file carries them.
    """
    if _FAST_NAME.fullmatch(token) and len(token) <= 253 and not token[-1].isdigit():
        return None if token in LOCAL_NAMES else token
    return _check_slowly(token, line, report)


def _check_slowly(token: str, line: int, report: LineReport) -> str | None:
    if token.lower().rstrip(".") in LOCAL_NAMES:
        return None
    if token.startswith("*."):
        # "*.x" (the names below x) reads as x in every format, as in plain lists: an
        # entry covers its name and everything below it.
        token = token[2:]
    try:
        name = normalize_domain(token)
    except InvalidName as exc:
        report.error(line, str(exc))
        return None
    if name in LOCAL_NAMES:
        return None
    top = name[name.rfind(".") + 1 :]
    if top.isdigit():
        # normalize_domain accepts digit labels, but no top-level domain is all digits.
        report.warn(line, f"{token!r} is an IP address, not a name; skipped")
        return None
    if "." not in name:
        # The matcher blocks an entry and everything below it: one label is a whole TLD.
        report.warn(line, f"{token!r} is a single label (a top-level domain); skipped")
        return None
    return name


def read_lines(
    text: str,
    report: LineReport,
    simple_lines: re.Pattern[str],
    simple_names: Callable[[str], list[str]],
    read_line: Callable[[str, int, LineReport], Iterable[str]],
) -> tuple[LineEntries, int]:
    """Every name of a list in file order with its first line, and how many repeats there were.

    simple_lines matches a run of lines that each hold one name needing no check (built on
    SIMPLE_NAME_LINE), and simple_names splits such a run into its names. Any other line
    goes to read_line (its text without the newline, its number), the format's full reader,
    so what is reported about a file is what reading every line with read_line reports.
    """
    if "\r" in text:
        # The same lines (only "\n" ends one), and every reader strips a line's "\r".
        text = text.replace("\r\n", "\n")
    names: list[str] = []
    lines = array("I")
    number = 1
    position = 0
    end = len(text)
    while position < end:
        run = simple_lines.match(text, position)
        if run is not None and run.end() > position:
            found = simple_names(run.group())
            names.extend(found)
            lines.extend(range(number, number + len(found)))
            number += len(found)
            position = run.end()
            if position == end:
                break
        newline = text.find("\n", position)
        if newline < 0:
            newline = end
        for name in read_line(text[position:newline], number, report):
            names.append(name)
            lines.append(number)
        number += 1
        position = newline + 1
    return _first_lines(names, lines)


def _first_lines(names: list[str], lines: array[int]) -> tuple[LineEntries, int]:
    # A set is the cheaper test (0.10 s against 0.17 s for a dict of a million names).
    if len(set(names)) == len(names):
        return LineEntries(names, lines), 0
    # Walked backwards, the first line of a name is the last one written.
    first = dict(zip(reversed(names), reversed(lines), strict=True))
    kept = list(dict.fromkeys(names))
    return LineEntries(kept, array("I", map(first.__getitem__, kept))), len(names) - len(kept)


class EntrySet:
    """Entries in file order, the first line of each name kept, repeats counted."""

    __slots__ = ("duplicates", "lines")

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.duplicates = 0

    def add(self, name: str, line: int) -> None:
        if name in self.lines:
            self.duplicates += 1
        else:
            self.lines[name] = line

    def entries(self) -> LineEntries:
        return LineEntries(list(self.lines), array("I", self.lines.values()))


def finish(
    report: LineReport,
    name: str,
    filename: str,
    kind: str,
    domains: Sequence[DomainEntry],
    exceptions: Sequence[DomainEntry] = (),
    duplicates: int = 0,
) -> BlockList:
    """The BlockList; ListError only when lines had errors and none gave an entry.

    Such a file is not a list in this format at all (an HTML error page, another format),
    and a refresh keeps the last good copy rather than load it as an empty list.
    """
    if not domains and not exceptions:
        report.raise_errors()
    return BlockList(
        name=name,
        source=filename,
        title=name,
        description=f"{kind} list {filename}",
        domains=domains,
        exceptions=exceptions,
        duplicates=duplicates,
        warnings=report.warnings(),
        skipped=report.error_count,
    )


def _line(problem: tuple[int, str]) -> int:
    return problem[0]
