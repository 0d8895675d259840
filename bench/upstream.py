"""The authoritative upstream every server forwards to: Debian's nsd on 127.0.0.1.

The same approach as tests/nsd.py (foreground, no privilege drop, everything in one temp dir),
without its dnspython dependency, and with what a benchmark needs: response-rate limiting off
(when the build has it: at the default rate nsd would start truncating a forwarded flood), one
server process, and a pin to the load generator's core so it never takes CPU from the server
under test.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.process import Child, ChildError, ask, free_port, rcode

_LOCATIONS = ("/usr/sbin/nsd", "/usr/local/sbin/nsd")


def find_nsd() -> str:
    found = shutil.which("nsd")
    if found:
        return found
    for candidate in _LOCATIONS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("nsd is not installed: apt-get install nsd")


@functools.cache
def rrl_supported(binary: str) -> bool:
    """Whether this nsd was built with --enable-ratelimit (then rrl-* options take effect)."""
    checkconf = Path(binary).with_name("nsd-checkconf")
    if not os.access(checkconf, os.X_OK):
        version = subprocess.run([binary, "-v"], capture_output=True, timeout=10, check=False)
        return b"--enable-ratelimit" in version.stdout + version.stderr
    probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    conf = probe_dir / f"bench-nsd-probe-{os.getpid()}.conf"
    try:
        conf.write_text('server:\n    rrl-ratelimit: 0\n    username: ""\n')
        probe = subprocess.run(
            [str(checkconf), "-o", "rrl-ratelimit", str(conf)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    finally:
        conf.unlink(missing_ok=True)
    return probe.returncode == 0 and probe.stdout.strip() == b"0"


class NsdUpstream:
    """nsd serving one zone on 127.0.0.1:port, started by start() and stopped by stop()."""

    def __init__(self, directory: Path, zone: str, zone_text: str, cores: str | None) -> None:
        self.binary = find_nsd()
        self.directory = directory
        self.zone = zone
        self.zone_text = zone_text
        self.cores = cores
        self.port = 0
        self.child: Child | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "zone").write_text(self.zone_text)
        for _ in range(3):  # another process may take the port between free_port() and bind
            self.port = free_port()
            conf = self.directory / "nsd.conf"
            conf.write_text(self._config())
            self.child = Child(
                "nsd",
                [self.binary, "-d", "-c", str(conf)],
                self.directory / "nsd.out",
                cores=self.cores,
                cwd=self.directory,
            ).start()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.child.running():
                reply = ask(self.port, self.zone, "SOA", timeout=0.2)
                if reply is not None and rcode(reply) == 0:
                    return
                time.sleep(0.05)
            log = self.child.log_tail() + "\n" + self._log_file()
            self.child.stop()
            self.child = None
            if "in use" not in log:
                break
        raise ChildError(f"nsd did not answer the SOA of {self.zone}\n{log}")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def _log_file(self) -> str:
        path = self.directory / "nsd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _config(self) -> str:
        work = self.directory
        lines = [
            "server:",
            f"    ip-address: 127.0.0.1@{self.port}",
            "    do-ip4: yes",
            "    do-ip6: no",
            "    server-count: 1",
            "    reuseport: no",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{work}"',
            '    database: ""',
            f'    zonelistfile: "{work}/zone.list"',
            f'    xfrdfile: "{work}/xfrd.state"',
            f'    xfrdir: "{work}"',
            f'    pidfile: "{work}/nsd.pid"',
            f'    logfile: "{work}/nsd.log"',
            "    verbosity: 0",
            "    hide-version: yes",
            "    zonefiles-write: 0",
            "    tcp-count: 256",
        ]
        if rrl_supported(self.binary):
            lines += ["    rrl-ratelimit: 0", "    rrl-whitelist-ratelimit: 0"]
        lines += [
            "",
            "remote-control:",
            "    control-enable: no",
            "",
            "zone:",
            f"    name: {self.zone}",
            '    zonefile: "zone"',
            "",
        ]
        return "\n".join(lines)
