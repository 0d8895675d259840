"""The audit trail of blocked attempts (and, optionally, of every query).

The query path hands each event to an AuditSink's `record`, which must only append to
memory: writing to disk happens off the hot path, in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuditEvent:
    time: float  #: Unix time
    client: str  #: the client's address (pseudonymized by the sink if configured)
    network: str
    qname: str
    qtype: int
    result: str  #: a ReplyKind value: blocked, forwarded, cached, refused, ...
    list_name: str = ""  #: the list that blocked it
    category: str = ""
    action: str = ""  #: the blocking mode applied (null, nxdomain, ...)


class AuditSink(Protocol):
    #: Record allowed queries too, not only blocked attempts.
    log_allowed: bool

    def record(self, event: AuditEvent) -> None: ...
