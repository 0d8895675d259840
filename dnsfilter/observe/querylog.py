"""The audit trail of blocked attempts (and, optionally, of every query), and of the bypass
events `dnsfilter monitor` sees.

The query path hands each event to an AuditSink's `record`, which must only append to
memory: writing to disk happens off the hot path, in batches.

AuditLog is the sink `dnsfilter serve` uses. `record` appends the event to a bounded deque
(a full buffer drops its oldest event and counts it); a flusher task hands the buffer to one
worker thread every `flush_interval` seconds, or as soon as it is half full. The worker
pseudonymizes client addresses and gives the rows to each writer: SQLite (the store
`dnsfilter report` reads) and JSON lines (for log shippers). SQLite therefore never runs on
the event loop, and the buffer is touched only by the loop's thread, so it needs no lock.

A store is a side system: when it cannot be opened or written (a full or read-only file
system, a missing mount), DNS goes on. The store (ReopeningWriter) says it is unhealthy,
every event it does not get is counted as dropped, and it is opened again every
`retry_interval` seconds until a write succeeds.

AuditThread feeds the same AuditLog from a process without an event loop (`dnsfilter
monitor`, whose events come from a capture thread): record() takes a lock, and a writer thread
of its own hands the batches to the AuditLog's writers. Bypass events are rows like any other,
with result "bypass", the event kind in `action` and the address reached in `destination`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from dnsfilter.errors import ConfigError
from dnsfilter.observe.metrics import AUDIT_DROP_REASONS, OTHER_QTYPE, QTYPE_LABELS, AuditStats

if TYPE_CHECKING:
    from dnsfilter.config import AuditConfig

log = logging.getLogger(__name__)

#: Hex digits kept of a keyed client hash: 64 bits, so distinct devices do not collide.
HASH_HEX_DIGITS = 16
#: Seconds between retention prunes (the size cap is checked after every batch).
MAINTENANCE_INTERVAL = 60.0
#: A size prune deletes down to this fraction of the cap, so it does not run on every batch.
SIZE_PRUNE_TARGET = 0.9
#: The SQLite schema version (PRAGMA user_version) this module writes and reads. Version 2
#: added `destination`; a version 1 store gets the column when a writer opens it, and the
#: report reads one as it is (its rows have no destination).
SCHEMA_VERSION = 2
#: The result of a bypass event (`dnsfilter monitor`); its action is the event kind.
BYPASS_RESULT = "bypass"
_WAL_LIMIT = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    client TEXT NOT NULL,
    network TEXT NOT NULL,
    qname TEXT NOT NULL,
    qtype INTEGER NOT NULL,
    result TEXT NOT NULL,
    list TEXT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    destination TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_list_network ON events (list, network);
"""
_INSERT = (
    "INSERT INTO events"
    " (time, client, network, qname, qtype, result, list, category, action, destination)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROWS_PER_INSERT = 50  #: 500 parameters: within SQLite's limit (999 before 3.32)
_INSERT_MANY = _INSERT.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * _ROWS_PER_INSERT),
)
_ADD_DESTINATION = "ALTER TABLE events ADD COLUMN destination TEXT NOT NULL DEFAULT ''"


class AuditEvent(NamedTuple):
    """One audited query or bypass event. A NamedTuple: built on the hot path for every
    blocked query, and a tuple is immutable at a third of a frozen dataclass's construction
    cost."""

    time: float  #: Unix time
    client: str  #: the client's address (pseudonymized by the sink if configured)
    network: str
    qname: str
    qtype: int
    result: str  #: a ReplyKind value (blocked, forwarded, cached, ...) or BYPASS_RESULT
    list_name: str = ""  #: the list that blocked it
    category: str = ""
    action: str = ""  #: the blocking mode applied (null, nxdomain, ...); a bypass's kind
    destination: str = ""  #: a bypass's ADDR:PORT ([V6ADDR]:PORT); "" for queries


class AuditSink(Protocol):
    #: Record allowed queries too, not only blocked attempts.
    log_allowed: bool

    def record(self, event: AuditEvent) -> None: ...


#: An event as writers receive it: AuditEvent's fields in order, client already pseudonymized.
Row = tuple[float, str, str, str, int, str, str, str, str, str]


class AuditWriter(Protocol):
    """One destination of audit rows; called only from the audit worker thread."""

    name: str
    kind: str  #: "sqlite" or "jsonl": the store label of the audit metrics

    def write(self, rows: Sequence[Row]) -> None:
        """Store every row or raise; PartialWrite says how many were stored all the same."""

    def maintain(self, now: float) -> None:
        """Periodic upkeep (retention); now is Unix time."""

    def close(self) -> None: ...


class PartialWrite(Exception):
    """A write failed after storing its first `stored` rows."""

    def __init__(self, stored: int, reason: str) -> None:
        super().__init__(reason)
        self.stored = stored


class StoreUnavailable(Exception):
    """The store is not open, and its next try is not due yet."""


# ---------------------------------------------------------------------------------------
# Pseudonymization


class Pseudonymizer:
    """Maps a client address to what is stored: itself, a keyed hash or its network prefix."""

    #: Distinct addresses remembered; a busy resolver sees the same clients over and over.
    CACHE_LIMIT = 65536

    def __init__(self, convert: Callable[[str], str] | None = None) -> None:
        self._convert = convert
        self._cache: dict[str, str] = {}

    @classmethod
    def keyed_hash(cls, key: bytes) -> Pseudonymizer:
        if not key:
            raise ValueError("the hash key is empty")

        def convert(address: str) -> str:
            # The canonical text, so "::1" and "0::1" get the same pseudonym.
            with contextlib.suppress(ValueError):
                address = str(ipaddress.ip_address(address))
            digest = hmac.new(key, address.encode(), hashlib.sha256).hexdigest()
            return digest[:HASH_HEX_DIGITS]

        return cls(convert)

    @classmethod
    def truncate(cls, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> Pseudonymizer:
        def convert(address: str) -> str:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return "?"  # never store what could not be reduced
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
            return str(ipaddress.ip_network((ip, prefix), strict=False).network_address)

        return cls(convert)

    @property
    def keeps_addresses(self) -> bool:
        """Whether addresses are stored as they are (pseudonymize: none)."""
        return self._convert is None

    def __call__(self, address: str) -> str:
        if self._convert is None:
            return address
        stored = self._cache.get(address)
        if stored is None:
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            stored = self._cache[address] = self._convert(address)
        return stored


def load_hash_key(path: Path) -> bytes:
    """The HMAC key in path (its text, surrounding whitespace stripped); created if missing."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        # Written aside, then linked into place: a full disk leaves no empty key behind, and
        # of two processes starting at once (workers), the second reads the first one's key.
        spare = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(spare, path)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
                    raise
                # A file system without hard links: create it in place, O_EXCL as the link.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(key + b"\n")
        except FileExistsError:
            return load_hash_key(path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(spare)
        log.warning("audit: created a new client hash key in %s; keep it to keep pseudonyms", path)
        return key
    if len(key) < 16:
        raise ValueError(f"{path}: the hash key must be at least 16 bytes (got {len(key)})")
    return key


class HashKey:
    """The keyed-hash pseudonymizer of a key file, loaded when first needed and again every
    retry_interval seconds while it cannot be (a full disk cannot take a new key)."""

    def __init__(
        self, path: Path, retry_interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.retry_interval = retry_interval
        self.clock = clock
        self._pseudonymizer: Pseudonymizer | None = None
        self._next_try = -math.inf

    def __call__(self) -> Pseudonymizer:
        """The pseudonymizer; raise OSError or ValueError (or StoreUnavailable) until then."""
        if self._pseudonymizer is None:
            now = self.clock()
            if now < self._next_try:
                raise StoreUnavailable(f"the hash key file {self.path} is not loaded yet")
            try:
                self._pseudonymizer = Pseudonymizer.keyed_hash(load_hash_key(self.path))
            except Exception:
                self._next_try = now + self.retry_interval
                raise
        return self._pseudonymizer


# ---------------------------------------------------------------------------------------
# Writers


def _rollback(db: sqlite3.Connection) -> None:
    """End a failed transaction. SQLite may have rolled it back already (a full disk does):
    a transaction left open would make every later BEGIN fail."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


class SqliteWriter:
    """The embedded store: one WAL-mode table, pruned by age and by size."""

    kind = "sqlite"

    def __init__(self, path: Path, retention_days: float = 90, max_bytes: int = 0) -> None:
        self.path = path
        self.name = f"sqlite {path}"
        self.retention = retention_days * 86400.0
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        # One worker thread uses the connection after this thread opened it (for early errors).
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self.db.execute("PRAGMA busy_timeout = 5000")
            # Only takes effect on a new file, before the table exists: lets prunes shrink it.
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL survives a crash of the process; a power cut may lose the last batch.
            self.db.execute("PRAGMA synchronous = NORMAL")
            # A big batch grows the write-ahead log; give the space back after checkpoints.
            self.db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
            self.db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.Error:
            self.db.close()
            raise

    def _migrate(self) -> None:
        """Bring a version 1 store to SCHEMA_VERSION. In one write transaction, looking at the
        columns rather than the version: `serve` and `monitor` may open the store at once."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if "destination" not in _columns(self.db, "events"):
                self.db.execute(_ADD_DESTINATION)
            # Only when it changes: reopening a store on a full disk must write nothing.
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            _rollback(self.db)
            raise

    def write(self, rows: Sequence[Row]) -> None:
        if rows:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                # Rows go _ROWS_PER_INSERT to a statement: 1.7 instead of 2.4 us a row of
                # CPU, measured, and the writer shares the core with the query path.
                whole = len(rows) - len(rows) % _ROWS_PER_INSERT
                if whole:
                    self.db.executemany(
                        _INSERT_MANY,
                        (
                            list(chain.from_iterable(rows[start : start + _ROWS_PER_INSERT]))
                            for start in range(0, whole, _ROWS_PER_INSERT)
                        ),
                    )
                if whole < len(rows):
                    self.db.executemany(_INSERT, rows[whole:])
                # Inside the try: on a full disk it is the COMMIT that fails, and then none
                # of the rows is stored (the WAL frames of a failed commit are never read).
                self.db.execute("COMMIT")
            except BaseException:
                _rollback(self.db)
                raise
        try:
            self.enforce_size()
        except sqlite3.Error as exc:
            raise PartialWrite(len(rows), f"stored, then the size prune failed: {exc}") from exc

    def maintain(self, now: float) -> None:
        if self.retention > 0:
            cutoff = now - self.retention
            if self._transaction("DELETE FROM events WHERE time < ?", [(cutoff,)]):
                self._vacuum()
        self.enforce_size()

    def used_bytes(self) -> int:
        """Bytes of pages in use: page_count * page_size less the free pages."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size: int = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def enforce_size(self) -> None:
        """Delete the oldest rows until the store is under SIZE_PRUNE_TARGET of max_bytes."""
        if self.max_bytes <= 0:
            return
        used = self.used_bytes()
        if used <= self.max_bytes:
            return
        target = self.max_bytes * SIZE_PRUNE_TARGET
        # Rows are not all the same size and index pages free up unevenly: estimate, re-measure.
        for _ in range(64):
            low, high = self.db.execute("SELECT min(id), max(id) FROM events").fetchone()
            if low is None:
                break
            share = 1.0 - target / used
            count = max(1, math.ceil((high - low + 1) * share))
            end = low + count
            self._transaction("DELETE FROM events WHERE id < ?", [(end,)])
            used = self.used_bytes()
            if used <= target:
                break
        self._vacuum()

    def _vacuum(self) -> None:
        """Give freed pages back to the file system, so the file shrinks as well."""
        # execute() steps a pragma once, and incremental_vacuum frees one page per step.
        self.db.executescript("PRAGMA incremental_vacuum;")

    def _transaction(self, sql: str, params: Sequence[Sequence[object]]) -> int:
        """Run sql once per parameter tuple in one transaction; return the rows changed."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            changed = self.db.executemany(sql, params).rowcount
            self.db.execute("COMMIT")
        except BaseException:
            _rollback(self.db)
            raise
        return changed

    def close(self) -> None:
        self.db.close()


class JsonlWriter:
    """One JSON object per line, to a file (reopened when rotated away) or to stdout (-).

    The file is written with os.write, so a full disk shows how far a batch got: the
    complete lines are stored, the rest counted as lost. A line cut short is ended by the
    next write (this process's or another worker's: each looks at the file's last byte), so
    only that one line is broken.
    """

    kind = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "jsonl stdout" if path == "-" else f"jsonl {path}"
        self._fd: int | None = None
        if path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open()

    def _open(self) -> int:
        # Read as well as write: _torn reads the last byte.
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    @staticmethod
    def _torn(fd: int) -> bool:
        """Whether the file ends inside a line (a write cut short by a full disk)."""
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"

    def _file(self) -> int:
        # As logging.WatchedFileHandler: logrotate moved the file away, so start a new one.
        try:
            stat = os.stat(self.path)
        except OSError:
            stat = None
        if self._fd is not None:
            own = os.fstat(self._fd)
            if stat is None or (stat.st_dev, stat.st_ino) != (own.st_dev, own.st_ino):
                self.close()
        if self._fd is None:
            self._fd = self._open()
        return self._fd

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        text = "".join(format_json_line(row) + "\n" for row in rows)
        if self.path == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        fd = self._file()
        skip = 1 if self._torn(fd) else 0
        data = b"\n" * skip + text.encode()
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, memoryview(data)[done:])
        except OSError as exc:
            stored = data.count(b"\n", skip, done)
            if data[done : done + 1] == b"\n" and done > skip:
                stored += 1  # only its newline is missing, and the next write brings it
            raise PartialWrite(stored, f"{exc.strerror or exc} after {stored} lines") from exc

    def maintain(self, now: float) -> None:
        del now  # shippers and logrotate own the file's lifetime

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ReopeningWriter:
    """A writer that opener opens now, and again after every failure, at most once every
    retry_interval seconds. Until it is open again, write() raises StoreUnavailable at once:
    the audit log counts those rows as dropped and DNS never waits for the disk.

    Healthy: open, and, once it has failed, a write of events has succeeded since. Opening
    alone proves little (a full disk still lets a file be opened, even created).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        opener: Callable[[], AuditWriter],
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.name = name
        self.opener = opener
        self.retry_interval = retry_interval
        self.clock = clock
        self._writer: AuditWriter | None = None
        self._next_try = -math.inf
        self._proven = True  #: no failure since the last write of events
        self.problem = ""  #: why the last open failed

    @property
    def healthy(self) -> bool:
        return self._writer is not None and self._proven

    def open(self, now: bool = False) -> AuditWriter:
        """The open writer: opened if it is not (when due, or now); raise if it cannot be."""
        if self._writer is None:
            started = self.clock()
            if not now and started < self._next_try:
                raise StoreUnavailable(f"{self.name} is not open")
            try:
                self._writer = self.opener()
            except Exception as exc:
                self._next_try = started + self.retry_interval
                self._proven = False
                self.problem = _reason(exc)
                raise
            self.problem = ""
        return self._writer

    def write(self, rows: Sequence[Row]) -> None:
        writer = self.open()
        try:
            writer.write(rows)
        except Exception:
            self._give_up()
            raise
        if rows:
            self._proven = True

    def maintain(self, now: float) -> None:
        if self._writer is not None:
            try:
                self._writer.maintain(now)
            except Exception:
                self._give_up()
                raise

    def _give_up(self) -> None:
        """Close after a failure: the next try opens it afresh (a file may have been moved,
        a connection left in a bad state)."""
        writer, self._writer = self._writer, None
        self._next_try = self.clock() + self.retry_interval
        self._proven = False
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def format_json_line(row: Row) -> str:
    when, client, network, qname, qtype, result, list_name, category, action, destination = row
    return json.dumps(
        {
            "time": format_time(when, "milliseconds"),
            "client": client,
            "network": network,
            "qname": qname,
            # A bypass event has no query type (0): an empty string, not "TYPE0".
            "qtype": qtype_name(qtype) if qtype or result != BYPASS_RESULT else "",
            "result": result,
            "list": list_name,
            "category": category,
            "action": action,
            "destination": destination,
        },
        separators=(",", ":"),
    )


def format_time(when: float, timespec: str = "seconds") -> str:
    """Unix time as ISO 8601 in UTC with a Z."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def qtype_name(qtype: int) -> str:
    label = QTYPE_LABELS.get(qtype, OTHER_QTYPE)
    return f"TYPE{qtype}" if label == OTHER_QTYPE else label  # RFC 3597 for the rest


# ---------------------------------------------------------------------------------------
# The sink


class AuditLog:
    """An AuditSink that buffers in memory and writes in batches from one worker thread."""

    def __init__(
        self,
        writers: Sequence[AuditWriter],
        pseudonymize: Pseudonymizer | Callable[[], Pseudonymizer] | None = None,
        *,
        stats: AuditStats | None = None,
        log_allowed: bool = False,
        buffer_size: int = 65536,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writers = list(writers)
        #: A Pseudonymizer, or what gives one (HashKey: raises until the key is loaded).
        self.pseudonymize = pseudonymize if pseudonymize is not None else Pseudonymizer()
        self.stats = stats if stats is not None else AuditStats()
        self.stats.bind(writer.kind for writer in self.writers)
        for writer in self.writers:
            self.stats.healthy[writer.kind] = _healthy(writer)
        #: store name -> why it is failing (a store that could not be opened is, already)
        self._problems = {
            w.name: w.problem for w in self.writers if isinstance(w, ReopeningWriter) and w.problem
        }
        self.log_allowed = log_allowed
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.clock = clock
        self._buffer: deque[AuditEvent] = deque(maxlen=buffer_size)
        # Half full: flush early, so a burst is written before it starts pushing events out.
        # (record() compares the length before its append, hence the - 1.)
        self._early = max(1, buffer_size // 2) - 1
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dnsfilter-audit")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_maintenance = -math.inf

    def record(self, event: AuditEvent) -> None:
        """Append to the buffer; runs on the event loop's thread, once per logged query."""
        buffer = self._buffer
        if len(buffer) >= self._early:
            if len(buffer) >= self.buffer_size:
                self.stats.lost("buffer_full", 1)  # append() below pushes the oldest out
            self._wake.set()
        buffer.append(event)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        """Start the flusher on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is buffered now, in the worker thread."""
        batch = self._take()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)

    def flush_now(self) -> None:
        """Write what is buffered now, in this thread (tests, and closing without a loop)."""
        self._executor.submit(self._write, self._take()).result()

    async def close(self) -> None:
        """Stop the flusher, write everything still buffered, close the writers."""
        if self._task is not None:
            # Not cancel(): a batch already taken from the buffer must reach the writers.
            self._closing = True
            self._wake.set()
            try:
                await self._task
            except Exception:
                log.exception("audit: the flusher failed")
            self._task = None
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write_and_close, self._take()
        )
        self._executor.shutdown(wait=True)

    def close_now(self) -> None:
        self._executor.submit(self._write_and_close, self._take()).result()
        self._executor.shutdown(wait=True)

    def _take(self) -> deque[AuditEvent]:
        batch = self._buffer
        self._buffer = deque(maxlen=self.buffer_size)
        return batch

    def _write(self, batch: Iterable[AuditEvent], final: bool = False) -> None:
        """Give batch to every writer; count what each does not store. final: the last
        batch, for which a store not open is tried once more, whenever its next try is."""
        pseudonymize = self.pseudonymize
        if isinstance(pseudonymize, Pseudonymizer):
            pseudonym = pseudonymize
        else:
            try:
                pseudonym = pseudonymize()
            except Exception as exc:
                # No key, no rows: an address is never stored unpseudonymized.
                lost = len(batch) if isinstance(batch, Sized) else len(list(batch))
                for writer in self.writers:
                    self._failed(writer, exc, lost, f"no hash key: {_reason(exc)}")
                return
        # An event has a row's fields in a row's order: rebuilt only to pseudonymize the
        # client (the rebuild costs 0.26 us an event, on the query path's core).
        rows: list[Row] = (
            list(batch)
            if pseudonym.keeps_addresses
            else [
                (
                    e.time,
                    pseudonym(e.client),
                    e.network,
                    e.qname,
                    e.qtype,
                    e.result,
                    e.list_name,
                    e.category,
                    e.action,
                    e.destination,
                )
                for e in batch
            ]
        )
        now = self.clock()
        # abs(): a wall clock set back must not postpone pruning until it catches up.
        maintain = abs(now - self._last_maintenance) >= MAINTENANCE_INTERVAL
        if maintain:
            self._last_maintenance = now
        for writer in self.writers:
            try:
                if final and rows and isinstance(writer, ReopeningWriter):
                    writer.open(now=True)
                writer.write(rows)
            except Exception as exc:
                stored = exc.stored if isinstance(exc, PartialWrite) else 0
                self._failed(writer, exc, len(rows) - stored, _reason(exc))
                continue
            self._stored(writer)
            if maintain:
                try:
                    writer.maintain(now)
                except Exception as exc:
                    self.stats.write_failures += 1
                    log.error("audit: pruning %s failed: %s", writer.name, exc)
                    self.stats.healthy[writer.kind] = _healthy(writer)

    def _failed(self, writer: AuditWriter, exc: Exception, lost: int, reason: str) -> None:
        """Count the rows writer did not store; log a store that starts (or keeps) failing."""
        self.stats.lost("store_failed", lost, writer.kind)
        self.stats.healthy[writer.kind] = False
        if isinstance(exc, StoreUnavailable):
            return  # not tried: its next try is not due
        self.stats.write_failures += 1
        retry = (
            f"retrying every {writer.retry_interval:g}s"
            if isinstance(writer, ReopeningWriter)
            else "retrying with the next batch"
        )
        if writer.name not in self._problems:
            log.error(
                "audit: %s failed, %d events lost; its events are dropped and counted until it "
                "works again (%s; DNS is not affected): %s",
                writer.name,
                lost,
                retry,
                reason,
            )
        elif self._problems[writer.name] != reason:
            log.error("audit: %s still failing (%s): %s", writer.name, retry, reason)
        self._problems[writer.name] = reason

    def _stored(self, writer: AuditWriter) -> None:
        healthy = self.stats.healthy[writer.kind] = _healthy(writer)
        if healthy and self._problems.pop(writer.name, None) is not None:
            lost = sum(self.stats.dropped[(writer.kind, r)] for r in AUDIT_DROP_REASONS)
            log.warning("audit: %s is writing again (%d events lost in all)", writer.name, lost)

    def _write_and_close(self, batch: Iterable[AuditEvent]) -> None:
        self._write(batch, final=True)
        for writer in self.writers:
            try:
                writer.close()
            except Exception as exc:
                log.error("audit: closing %s failed: %s", writer.name, exc)

    def write_batch(self, batch: Iterable[AuditEvent]) -> None:
        """Pseudonymize and write batch in the calling thread; for AuditThread, whose one
        writer thread is then the only caller."""
        self._write(batch)

    def write_and_close(self, batch: Iterable[AuditEvent]) -> None:
        """The last batch, in the calling thread; then close the writers."""
        self._write_and_close(batch)
        self._executor.shutdown(wait=True)

    def describe(self) -> str:
        return ", ".join(writer.name for writer in self.writers)


class AuditThread:
    """Hands events to an AuditLog from any thread, without an event loop (`dnsfilter
    monitor`: events come from the capture thread, scapy's or the main one).

    record() appends under a lock (a few hundred nanoseconds; a monitor raises far fewer events
    than it reads packets) and, once the buffer is half full, wakes the writer thread. That
    thread takes the buffer every flush_interval seconds, or when woken, and writes it with
    AuditLog.write_batch: pseudonymization, writers, pruning, failure counts as for `serve`.
    A full buffer drops its oldest event and counts it in the log's AuditStats.
    """

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self._lock = threading.Lock()
        self._buffer: deque[AuditEvent] = deque()
        self._early = max(1, audit.buffer_size // 2)
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            buffer = self._buffer
            if len(buffer) >= self.audit.buffer_size:
                buffer.popleft()
                self.audit.stats.lost("buffer_full", 1)
            buffer.append(event)
            if len(buffer) >= self._early:
                self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dnsfilter-audit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.audit.flush_interval)
            self._wake.clear()
            try:
                self.audit.write_batch(self._take())
            except Exception:
                # The AuditLog counts and logs writer failures itself; this is anything else.
                self.audit.stats.write_failures += 1
                log.exception("audit: writing a batch failed")

    def close(self) -> None:
        """Stop the writer thread, write what is still buffered, close the writers."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.audit.write_and_close(self._take())

    def _take(self) -> list[AuditEvent]:
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
        return batch

    def describe(self) -> str:
        return self.audit.describe()


def build_audit_log(config: AuditConfig, stats: AuditStats | None = None) -> AuditLog | None:
    """The sink the config asks for (None when audit.enabled is false).

    A store that cannot be opened now is logged and retried (ReopeningWriter): a full or
    read-only disk is no reason to stop serving DNS. Only a hash key file that holds a bad
    key raises ConfigError, as a bad config does.
    """
    if not config.enabled:
        return None
    retry = config.retry_interval
    pseudonymize: Pseudonymizer | HashKey = Pseudonymizer()
    if config.pseudonymize == "hash":
        assert config.hash_key_file is not None  # the config loader demands one
        pseudonymize = HashKey(Path(config.hash_key_file), retry)
        try:
            pseudonymize()
        except ValueError as exc:
            raise ConfigError([f"audit.hash_key_file: {exc}"]) from None
        except OSError as exc:
            log.error(
                "audit: cannot load the hash key (retrying every %gs; until then no event "
                "is stored, and each is counted as dropped): audit.hash_key_file: %s",
                retry,
                _reason(exc),
            )
    elif config.pseudonymize == "truncate":
        pseudonymize = Pseudonymizer.truncate(config.truncate_ipv4, config.truncate_ipv6)
    writers: list[ReopeningWriter] = []
    if config.sqlite_path is not None:
        path = Path(config.sqlite_path)
        max_bytes = int(config.max_size_mb * 1024 * 1024)
        writers.append(
            ReopeningWriter(
                SqliteWriter.kind,
                f"sqlite {path}",
                lambda: SqliteWriter(path, config.retention_days, max_bytes),
                retry,
            )
        )
    if config.jsonl_path is not None:
        jsonl = config.jsonl_path
        writers.append(
            ReopeningWriter(
                JsonlWriter.kind,
                "jsonl stdout" if jsonl == "-" else f"jsonl {jsonl}",
                lambda: JsonlWriter(jsonl),
                retry,
            )
        )
    for writer in writers:
        try:
            writer.open()
        except (OSError, sqlite3.Error) as exc:
            key = "sqlite_path" if writer.kind == SqliteWriter.kind else "jsonl_path"
            log.error(
                "audit: cannot open %s (retrying every %gs; DNS is served meanwhile, and "
                "every event it misses is counted as dropped): audit.%s: %s",
                writer.name,
                retry,
                key,
                _reason(exc),
            )
    return AuditLog(
        writers,
        pseudonymize,
        stats=stats,
        log_allowed=config.log_allowed,
        buffer_size=config.buffer_size,
        flush_interval=config.flush_interval,
    )


def _healthy(writer: AuditWriter) -> bool:
    """A store reopened after failures says whether it is open; any other is, once built."""
    return writer.healthy if isinstance(writer, ReopeningWriter) else True


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileExistsError):  # mkdir of a parent that is a file
        return f"{exc.filename} is not a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


# ---------------------------------------------------------------------------------------
# Reading the store back


@dataclass(frozen=True, slots=True)
class DeviceAttempts:
    """One client's attempts of one kind at one list: a row of `dnsfilter report`."""

    list_name: str
    network: str
    client: str
    count: int
    first_seen: float
    last_seen: float
    #: (name, count), most frequent first; a bypass without a name gives its destination
    top_names: tuple[tuple[str, int], ...]
    kind: str = "blocked"  #: "blocked" (a query dnsfilter answered) or a bypass event kind


class NotAnAuditStore(Exception):
    """The file is not a dnsfilter audit database (or not one this version reads)."""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def open_store(path: Path) -> sqlite3.Connection:
    """Open an audit database read-only; raise FileNotFoundError or NotAnAuditStore.

    A version 1 store (no writer has opened it since the upgrade) is read through a temporary
    view that gives every row an empty destination, so the queries below read both versions.
    """
    if not path.is_file():
        raise FileNotFoundError(path)
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        has_table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise NotAnAuditStore(f"{path}: {exc}") from None
    if version not in (1, SCHEMA_VERSION) or not has_table:
        db.close()
        raise NotAnAuditStore(f"{path}: not a dnsfilter audit database (schema {version})")
    if "destination" not in _columns(db, "events"):
        # A TEMP object: allowed on a read-only connection, and found before main's table.
        db.execute("CREATE TEMP VIEW events AS SELECT *, '' AS destination FROM main.events")
    return db


#: A row's kind: "blocked" for a blocked query, the event kind for a bypass.
_KIND = f"CASE WHEN result = '{BYPASS_RESULT}' THEN action ELSE result END"
#: What a row reached: the name asked or sent as TLS server name, else the address.
_TARGET = "CASE WHEN qname != '' THEN qname ELSE destination END"


def blocked_devices(
    db: sqlite3.Connection,
    since: float | None = None,
    list_name: str | None = None,
    network: str | None = None,
    top: int = 3,
) -> list[DeviceAttempts]:
    """Per list, the clients with blocked attempts: ordered by list, then count descending."""
    return device_attempts(db, ("blocked",), since, list_name, network, top)


def device_attempts(
    db: sqlite3.Connection,
    kinds: Iterable[str],
    since: float | None = None,
    list_name: str | None = None,
    network: str | None = None,
    top: int = 3,
) -> list[DeviceAttempts]:
    """Per list and client, its attempts of each of kinds ("blocked" and bypass event kinds).

    Ordered by list, then by the client's attempts of all these kinds together (highest
    first), network and client, so a device's rows stand together; then by kind.
    """
    wanted = sorted(set(kinds))
    bypass = [kind for kind in wanted if kind != "blocked"]
    either = []
    params: list[object] = []
    if "blocked" in wanted:
        either.append("result = 'blocked'")
    if bypass:
        either.append(
            f"(result = '{BYPASS_RESULT}' AND action IN ({', '.join('?' * len(bypass))}))"
        )
        params.extend(bypass)
    if not either:
        return []
    where = [f"({' OR '.join(either)})"]
    if since is not None:
        where.append("time >= ?")
        params.append(since)
    if list_name is not None:
        where.append("list = ?")
        params.append(list_name)
    if network is not None:
        where.append("network = ?")
        params.append(network)
    condition = " AND ".join(where)
    devices = db.execute(
        f"SELECT list, network, client, {_KIND} AS kind, count(*), min(time), max(time)"
        f" FROM events WHERE {condition} GROUP BY list, network, client, kind",
        params,
    ).fetchall()
    names: dict[tuple[str, str, str, str], list[tuple[str, int]]] = {}
    for list_, net, client, kind, target, count in db.execute(
        "SELECT list, network, client, kind, target, n FROM ("
        " SELECT list, network, client, kind, target, count(*) AS n, row_number() OVER ("
        "  PARTITION BY list, network, client, kind ORDER BY count(*) DESC, target) AS rank"
        f" FROM (SELECT *, {_KIND} AS kind, {_TARGET} AS target FROM events WHERE {condition})"
        " GROUP BY list, network, client, kind, target"
        ") WHERE rank <= ? ORDER BY rank",
        [*params, top],
    ):
        names.setdefault((list_, net, client, kind), []).append((target, count))
    totals: Counter[tuple[str, str, str]] = Counter()
    for list_, net, client, _kind, count, _first, _last in devices:
        totals[list_, net, client] += count
    devices.sort(key=lambda d: (d[0], -totals[d[0], d[1], d[2]], d[1], d[2], d[3]))
    return [
        DeviceAttempts(
            list_,
            net,
            client,
            count,
            first,
            last,
            tuple(names.get((list_, net, client, kind), ())),
            kind,
        )
        for list_, net, client, kind, count, first, last in devices
    ]
