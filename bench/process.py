"""Child processes pinned to a core, a tiny DNS client, and the start-to-first-answer probe.

Every child runs in its own session (its own process group), so ``stop()`` reaches the forks a
server makes (nsd's server and xfrd processes) and nothing else. Only the standard library is
used: the benchmark must not share code with what it measures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "AAAA": 28}
_STOP_TIMEOUT = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ChildError(RuntimeError):
    """A child process exited or misbehaved; the message carries the tail of its log."""


class Child:
    """One command, pinned with ``taskset -c CORE`` when core is given, logging into a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        cores: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [*(["taskset", "-c", cores] if cores is not None else []), *argv]
        self.log_path = log
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        self._log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # its own process group: stop() kills its forks too
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_running(self) -> None:
        if not self.running():
            code = self.proc.returncode if self.proc is not None else None
            raise ChildError(f"{self.name} exited with status {code}\n{self.log_tail()}")

    def log_tail(self, limit: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-limit:].strip() or "(empty log)"

    def rss_kib(self) -> int:
        """VmRSS of every live process in the child's group (one process for most servers)."""
        return sum(_vm_rss_kib(pid) for pid in _group_members(self.pid))

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by every live process in the child's group."""
        return sum(_cpu_seconds(pid) for pid in _group_members(self.pid))

    def stop(self) -> int | None:
        """SIGTERM to the group, SIGKILL after a grace period; wait until the group is gone."""
        proc = self.proc
        try:
            if proc is not None:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(_STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(_STOP_TIMEOUT)
                _reap_group(proc.pid)
                return proc.returncode
            return None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _reap_group(pgid: int, timeout: float = 5.0) -> None:
    """Wait for the rest of the group (forked children) to exit; SIGKILL what lingers."""
    deadline = time.monotonic() + timeout
    while _group_members(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.1)
            return
        time.sleep(0.02)


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _vm_rss_kib(pid: int) -> int:
    try:
        for line in Path("/proc", str(pid), "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def parse_cores(text: str) -> set[int]:
    """taskset's list syntax: "0", "0,2", "0-3"."""
    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return cores


def idle_seconds(cores: set[int]) -> float:
    """Idle (and iowait) time of these cores since boot, from /proc/stat.

    Only the idle counters are used: with a tickless kernel they are exact, while the busy
    counters are sampled at each tick and drift from them under a fast sleep/wake load. Busy is
    then wall time minus idle: the server, the kernel's loopback delivery (softirq) and every
    other process that ran there, which a process's own CPU time leaves out.
    """
    idle = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            idle += int(values[3]) + int(values[4])
    return idle / _CLOCK_TICKS


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 right now (the server binds it a moment later)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")


# ---------------------------------------------------------------------------------------
# A tiny DNS client: enough to probe readiness and check one answer


def build_query(name: str, qtype: str, qid: int) -> bytes:
    """A recursion-desired query without EDNS."""
    question = b"".join(bytes((len(label),)) + label.encode() for label in name.split("."))
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + question
        + b"\0"
        + struct.pack("!HH", QTYPES[qtype], 1)
    )


def ask(port: int, name: str, qtype: str = "A", timeout: float = 2.0) -> bytes | None:
    """One UDP query to 127.0.0.1:port; the reply with our ID, or None on timeout."""
    qid = secrets.randbits(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(build_query(name, qtype, qid), ("127.0.0.1", port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                return None
            if len(reply) >= 12 and int.from_bytes(reply[:2], "big") == qid:
                return reply
    return None


def rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


def first_address(reply: bytes) -> str | None:
    """The address in the first A or AAAA record of the answer section, as text."""
    ancount = int.from_bytes(reply[6:8], "big")
    offset = _skip_name(reply, 12) + 4  # the question
    for _ in range(ancount):
        offset = _skip_name(reply, offset)
        rtype, _, _, length = struct.unpack_from("!HHIH", reply, offset)
        offset += 10
        data = reply[offset : offset + length]
        offset += length
        if rtype == QTYPES["A"] and length == 4:
            return socket.inet_ntop(socket.AF_INET, data)
        if rtype == QTYPES["AAAA"] and length == 16:
            return socket.inet_ntop(socket.AF_INET6, data)
    return None


def _skip_name(wire: bytes, offset: int) -> int:
    while True:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def wait_first_answer(child: Child, port: int, name: str, timeout: float) -> float:
    """Seconds from the child's start to its first reply, asking every 10 ms.

    Each try sends a fresh query and waits up to 10 ms; a late reply to an earlier try counts
    too (its arrival is when the server answered).
    """
    sent: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while True:
            elapsed = time.monotonic() - child.started_at
            if elapsed > timeout:
                raise ChildError(
                    f"{child.name} did not answer within {timeout:g}s\n{child.log_tail()}"
                )
            child.check_running()
            qid = secrets.randbits(16)
            sent.add(qid)
            sock.sendto(build_query(name, "A", qid), ("127.0.0.1", port))
            try_until = time.monotonic() + 0.01
            while (left := try_until - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    reply = sock.recv(65535)
                except TimeoutError:
                    break
                except ConnectionRefusedError:  # ICMP port unreachable: nothing bound yet
                    time.sleep(max(0.0, try_until - time.monotonic()))
                    break
                if len(reply) >= 12 and int.from_bytes(reply[:2], "big") in sent:
                    return time.monotonic() - child.started_at
