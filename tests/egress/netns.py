"""Three network namespaces in a row, with only the addresses the tests assign.

    client 198.51.100.1/26 --- .62/26 router .65/26 --- .66/26 server (the approved resolver)
                                                         203.0.113.1/24 (a "banned" address)
                                                         192.0.2.53/24  (an unapproved resolver)

The namespaces have no link to the host or anything else, and the client's routes all lead
through the router to the server: nothing a test sends can reach another machine. The rules
go on the client (output hook: a host filtering itself) or the router (forward hook: a
gateway filtering its clients). Everything is torn down on exit, whatever happened.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

CLIENT_ADDRESS = "198.51.100.1"
ROUTER_CLIENT_SIDE = "198.51.100.62"
ROUTER_SERVER_SIDE = "198.51.100.65"
RESOLVER_ADDRESS = "198.51.100.66"
BANNED_ADDRESS = "203.0.113.1"
OTHER_RESOLVER_ADDRESS = "192.0.2.53"
COMMAND_TIMEOUT = 15.0
HERE = Path(__file__).parent

_counter = itertools.count()


class NamespaceError(Exception):
    """Setting up the namespaces failed; the message has the command and its output."""


class Lab:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}-{next(_counter)}"
        self.client = f"dnsf-c{tag}"
        self.router = f"dnsf-r{tag}"
        self.server = f"dnsf-s{tag}"
        self.client_if = f"dfc{tag}"[:15]
        self._processes: list[Running] = []

    def __enter__(self) -> Self:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        for ns in (self.client, self.router, self.server):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        links = (
            (self.client, self.client_if, f"{CLIENT_ADDRESS}/26"),
            (self.router, "to-client", f"{ROUTER_CLIENT_SIDE}/26"),
            (self.router, "to-server", f"{ROUTER_SERVER_SIDE}/26"),
            (self.server, "to-router", f"{RESOLVER_ADDRESS}/26"),
        )
        for (ns_a, if_a, _), (ns_b, if_b, _) in (links[0:2], links[2:4]):
            _ip(
                "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
                "netns", ns_b,
            )  # fmt: skip
        for ns, interface, address in links:
            # No IPv6 autoconfiguration chatter on the links: only the tests' own packets.
            self.run(ns, "sysctl", "-qw", f"net.ipv6.conf.{interface}.disable_ipv6=1")
            _ip("-n", ns, "addr", "add", address, "dev", interface)
            _ip("-n", ns, "link", "set", interface, "up")
        for prefix in (f"{BANNED_ADDRESS}/24", f"{OTHER_RESOLVER_ADDRESS}/24"):
            _ip("-n", self.server, "addr", "add", prefix, "dev", "to-router")
        self.run(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for prefix in ("198.51.100.64/26", "203.0.113.0/24", "192.0.2.0/24"):
            _ip("-n", self.client, "route", "add", prefix, "via", ROUTER_CLIENT_SIDE)
        _ip("-n", self.router, "route", "add", "203.0.113.0/24", "via", RESOLVER_ADDRESS)
        _ip("-n", self.router, "route", "add", "192.0.2.0/24", "via", RESOLVER_ADDRESS)
        _ip("-n", self.server, "route", "add", "198.51.100.0/26", "via", ROUTER_SERVER_SIDE)

    def close(self) -> None:
        for process in self._processes:
            process.stop()
        for ns in (self.client, self.router, self.server):
            subprocess.run(
                ["ip", "netns", "del", ns],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )

    def run(self, ns: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ip", "netns", "exec", ns, *command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise NamespaceError(f"{' '.join(command)} in {ns}: {result.stderr.strip()}")
        return result

    def start(self, ns: str, *command: str) -> Running:
        """A long-running command in ns; stopped (SIGTERM, then SIGKILL) on close."""
        process = Running(
            subprocess.Popen(
                ["ip", "netns", "exec", ns, *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        self._processes.append(process)
        return process

    def python(self, ns: str, script: str, *args: str) -> Running:
        return self.start(ns, sys.executable, str(HERE / script), *args)

    def probe(
        self, proto: str, address: str, port: int, payload: bytes, timeout: float = 2.0
    ) -> str:
        """What a client sending payload gets back: "reply HEX", "timeout" or "refused"."""
        result = self.run(
            self.client,
            sys.executable,
            str(HERE / "probe.py"),
            proto,
            address,
            str(port),
            payload.hex(),
            str(timeout),
        )
        return result.stdout.strip()


class Running:
    """A started process whose output is read as it comes, so its pipes never fill up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                self._lines[name].append(line)
                self._changed.notify_all()

    def output(self, name: str) -> str:
        with self._changed:
            return "".join(self._lines[name])

    def wait_for(self, needle: str, name: str = "stderr", timeout: float = COMMAND_TIMEOUT) -> None:
        """Until a line of stdout or stderr contains needle; fail with what was seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(needle in line for line in self._lines[name]):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._changed.wait(min(remaining, 0.2))
            if any(needle in line for line in self._lines[name]):
                return
        raise AssertionError(
            f"no {name} line with {needle!r} within {timeout} s (exit {self.process.poll()});\n"
            f"stdout:\n{self.output('stdout')}\nstderr:\n{self.output('stderr')}"
        )

    def stop(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """SIGTERM, then SIGKILL if it does not exit; (status, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> tuple[int, str, str]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode, self.output("stdout"), self.output("stderr")


def _ip(*args: str) -> None:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {result.stderr.strip()}")
