"""Every exception dnsfilter raises on purpose.

DnsFilterError
├── ConfigError          a config file is invalid (one line per problem)
├── ListError            a blocklist file is invalid (one line per problem)
├── WireError            a DNS message cannot be used
│   ├── DropPacket       not worth an answer (too short, or a response)
│   ├── FormatError      the header parsed but the rest did not: answer FORMERR
│   ├── NotImplementedOpcode  an opcode other than QUERY: answer NOTIMP
│   ├── BadVersion       an EDNS version other than 0: answer BADVERS
│   └── Unverifiable     signed (TSIG, SIG(0)) with a key we do not have: answer NOTAUTH
├── UpstreamError        no usable answer from an upstream
│   ├── UpstreamTimeout  the upstream did not answer in time
│   └── SocketUnavailable  no socket could be made to ask it (descriptors, buffers)
└── PrivilegeError       the process could not become server.user
"""

from __future__ import annotations


class DnsFilterError(Exception):
    """Base class of dnsfilter's own errors."""


class _ProblemList(DnsFilterError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ConfigError(_ProblemList):
    """A config file is invalid; ``problems`` holds one ``file:line: path: message`` each."""


class ListError(_ProblemList):
    """A blocklist file is invalid; ``problems`` holds one ``file:line: message`` each."""


class WireError(DnsFilterError):
    """A DNS message cannot be used."""


class DropPacket(WireError):
    """The packet gets no answer: shorter than a header, or a response sent to us."""


class FormatError(WireError):
    """The header parsed but the question or EDNS did not: the answer is FORMERR."""


class NotImplementedOpcode(WireError):
    """The opcode is not QUERY: the answer is NOTIMP."""


class BadVersion(WireError):
    """The client asked for an EDNS version we do not speak: the answer is BADVERS."""

    def __init__(self, message: str, question_end: int = 12) -> None:
        super().__init__(message)
        self.question_end = question_end  #: the reply echoes the question up to here


class Unverifiable(WireError):
    """The query is signed (TSIG, SIG(0)) and this resolver has no key to check it: the
    answer is NOTAUTH, unsigned (RFC 8945 5.2), never an answer as if it were checked."""

    def __init__(self, message: str, question_end: int, tsig_start: int | None) -> None:
        super().__init__(message)
        self.question_end = question_end
        self.tsig_start = tsig_start  #: offset of the query's TSIG record; None for SIG(0)


class UpstreamError(DnsFilterError):
    """No usable answer came from an upstream."""


class UpstreamTimeout(UpstreamError):
    """An upstream did not answer within its timeout."""


class SocketUnavailable(UpstreamError):
    """No socket to an upstream could be made here (EMFILE, ENFILE, ENOBUFS, ENOMEM): our
    shortage, not the upstream's fault, so it is not marked dead and no other is tried."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  #: the errno's name, a bounded metric label


class PrivilegeError(DnsFilterError):
    """Switching to server.user / server.group failed, or left privileges behind."""
