"""Domain names as the resolver compares them: lowercase ASCII, no trailing dot.

Names with non-ASCII letters are encoded as browsers and registries do: IDNA 2008 with the
UTS #46 mapping, non-transitional (the `idna` package). Python's own "idna" codec is IDNA
2003, which maps faß.de to fass.de, another registrable domain.
"""

from __future__ import annotations

import re

import idna

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class InvalidName(ValueError):
    """A text is not a usable domain name; the message says why."""


def normalize_domain(text: str) -> str:
    """Lowercase, drop one trailing dot, IDNA-encode; raise InvalidName if invalid."""
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidName("empty name")
    if not name.isascii():
        name = _encode_idn(text, name)
    name = name.lower()
    if name.startswith("*."):
        raise InvalidName(f"{text!r}: an entry already matches every name below it; drop the '*.'")
    if len(name) > 253:
        raise InvalidName(f"name longer than 253 characters ({len(name)})")
    for label in name.split("."):
        if not label:
            raise InvalidName(f"{text!r} has an empty label")
        if len(label) > 63:
            raise InvalidName(f"label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            if label.startswith("-") or label.endswith("-"):
                raise InvalidName(f"label {label!r} starts or ends with '-'")
            raise InvalidName(f"label {label!r} has characters other than a-z 0-9 - _")
    return name


def _encode_idn(text: str, name: str) -> str:
    """The A-label form of a name with non-ASCII letters (IDNA 2008, UTS #46 mapping)."""
    try:
        # The mapping runs over the whole name first: it lowercases, and folds full-width
        # dots and letters to ASCII, so the labels are only split afterwards.
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        # ASCII labels keep what the resolver allows (underscores); only the others are
        # encoded, which also checks them against IDNA 2008's rules.
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidName(f"cannot encode {text!r} as an IDN (IDNA 2008): {exc}") from None
    return ".".join(labels)


def suffixes(name: str) -> list[str]:
    """The name and every parent of it, most specific first."""
    out = [name]
    dot = name.find(".")
    while dot >= 0:
        name = name[dot + 1 :]
        out.append(name)
        dot = name.find(".")
    return out


def plain_tail(name: str) -> str:
    """The suffix of a presentation-form name that plain names can match: the labels after
    its last escaped one ("" when that is the last label). List entries and forward zones
    are plain, so they can only match a name at a suffix made of plain labels, and a dot
    escaped inside a label (``weixin\\.qq\\.com``) must not count as a label boundary."""
    tail = 0
    escaped = False
    i = 0
    end = len(name)
    while i < end:
        char = name[i]
        if char == "\\":
            escaped = True
            i += 4 if name[i + 1 : i + 2].isdigit() else 2
        elif char == ".":
            if escaped:
                tail = i + 1
                escaped = False
            i += 1
        else:
            i += 1
    return "" if escaped else name[tail:]
