"""A real DNS daemon run by a test: a temp dir, a free port, start, wait until it answers, stop.

Subclasses say how to pick the port, write the config and tell that the daemon is ready;
starting again on another port when a free port was taken before the daemon bound it, and
stopping the whole process group, are the same for every daemon.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

_START_ATTEMPTS = 5
_STOP_TIMEOUT = 5.0


class Daemon:
    #: The program's name: the temp dir, the config and stderr files and messages use it.
    name: ClassVar[str]

    def __init__(self, binary: str, startup_timeout: float) -> None:
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None, f"{self.name} not started"
        return self.workdir / f"{self.name}.conf"

    def start(self) -> Self:
        """Write the config, start the daemon and wait until it answers."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"dnsfilter-{self.name}-"))
        try:
            self._prepare()
            problem = ""
            for _ in range(_START_ATTEMPTS):
                self.port = self._pick_port()
                self.config_path.write_text(self._config())
                self._check_config()
                self._spawn()
                found = self._wait_ready()
                if found is None:
                    return self
                problem = found
                self._terminate()
                if "already in use" not in problem.lower():  # only a lost port race is retried
                    break
            raise RuntimeError(f"{self.name} did not start on {self._where()}:\n{problem}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the daemon (kill it if it lingers) and remove the temp dir. Idempotent."""
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a daemon defines

    def _prepare(self) -> None:
        """Files the daemon needs before its config (zones, ...)."""

    def _pick_port(self) -> int:
        raise NotImplementedError

    def _config(self) -> str:
        raise NotImplementedError

    def _check_config(self) -> None:
        """Reject a bad config before starting, with the checker's own words."""

    def _wait_ready(self) -> str | None:
        """None once the daemon answers, else what went wrong."""
        raise NotImplementedError

    def _where(self) -> str:
        return f"port {self.port}"

    # -- shared

    def _spawn(self) -> None:
        assert self.workdir is not None
        if self._output is not None:
            self._output.close()
        self._output = open(self.workdir / f"{self.name}.stderr", "wb")  # noqa: SIM115 - closed in _terminate
        self._proc = subprocess.Popen(
            [self.binary, "-d", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # its own process group, so its children can be killed too
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # not reaped: the group is ours
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(_STOP_TIMEOUT)
        if proc is not None:
            _wait_group_gone(proc.pid)
        if self._output is not None:
            self._output.close()
            self._output = None


def _live_members(pgid: int) -> list[int] | None:
    """PIDs of non-zombie processes in group ``pgid``; None where /proc cannot tell."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _wait_group_gone(pgid: int, timeout: float = 3.0) -> None:
    """Wait for the daemon's children (same process group) to exit; kill stragglers.

    Zombies do not count: after the main process is gone they are reaped by init, not by us.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = _live_members(pgid)
        if not members:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):  # members still live, so the group is ours
        os.killpg(pgid, signal.SIGKILL)
