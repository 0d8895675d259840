"""The long live fuzz: N hostile datagrams at a running `dnsfilter serve`, nsd upstream.

    .venv/bin/python -m fuzz.live --packets 1000000      # about two minutes a 100k here

The CI test (tests/integration/test_fuzz_live.py) sends 100,000 against a scripted upstream;
this sends as many as asked against a real nsd on loopback, with the same packet kinds
(tests/dnsfuzz.py) in the same paced bursts, and measures what the CI test cannot afford:

- crashes: the server process must still run, and its log must hold no traceback;
- hangs: every --check-every packets (and at the end) a real query for www.example.test must
  be answered correctly within the harness timeout (3 s), over UDP (tried up to 3 times: the
  kernel drops datagrams when the flood outruns the server, and counts them; the summary
  gives both) and then over TCP, which loses nothing; queries in flight must return to 0;
- memory: VmRSS and VmHWM of the server from /proc before, at every check, and after;
- time: seconds for the whole run and packets sent a second.

Prints one line per check and a JSON summary at the end. Exit status 0 when there was no
crash and no hang, 1 otherwise, 2 when nsd or the server cannot start.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python fuzz/live.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.exception
import dns.rcode

from tests import dnsfuzz
from tests.integration.conftest import APPS_LIST, OTHER_LIST, base_config
from tests.integration.harness import DnsFilter, wait_until
from tests.nsd import NsdServer

#: Packets per burst, as in the CI test; --rate sets how many bursts a second (CI: 80, so
#: 16,000 packets a second at most).
BURST = 200
SOCKETS = 8
#: Tries of the UDP check before it counts as a hang (each waits the harness's 3 s).
UDP_TRIES = 3


def _rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB, from /proc."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            return count
        count += 1


def _check(server: DnsFilter, tcp: bool = False) -> str | None:
    """None when a real query gets the right answer in time, else what went wrong."""
    try:
        reply = server.tcp("www.example.test") if tcp else server.udp("www.example.test")
    except (dns.exception.DNSException, OSError) as exc:
        return f"{'TCP' if tcp else 'UDP'} query failed: {type(exc).__name__}: {exc}"
    answers = [rd.to_text() for rrset in reply.answer for rd in rrset]
    if reply.rcode() != dns.rcode.NOERROR or answers != ["192.0.2.10"]:
        return f"wrong answer: rcode {dns.rcode.to_text(reply.rcode())}, {answers}"
    return None


def _hung(server: DnsFilter) -> tuple[str | None, int]:
    """(what is wrong, UDP tries lost) for a server that must still answer.

    When the flood outruns the server the kernel drops datagrams from its full receive
    buffer, the check's own among them: a stub would try again, and so does this, up to
    UDP_TRIES times. A TCP query must be answered at once: its bytes are never dropped, so
    a timeout there means the event loop is stuck.
    """
    lost = 0
    for _ in range(UDP_TRIES):
        problem = _check(server)
        if problem is None or "timed out" not in problem:
            break
        lost += 1
    if problem is not None:
        return problem, lost
    return _check(server, tcp=True), lost


def _udp_receive_errors() -> int:
    """The kernel's UDP RcvbufErrors (datagrams dropped on a full socket buffer), all sockets."""
    with open("/proc/net/snmp") as snmp:
        rows = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def run(
    packets: int, seed: int, check_every: int, rate: int, cache_entries: int, workdir: Path
) -> dict[str, Any]:
    rng = random.Random(seed)
    with NsdServer() as nsd:
        config = base_config(
            [nsd.address], upstream={"timeout": 1}, cache={"max_entries": cache_entries}
        )
        server = DnsFilter(workdir, config, {"apps": APPS_LIST, "other": OTHER_LIST})
        server.start()
        try:
            return _fire(server, rng, packets, seed, check_every, rate)
        finally:
            code = server.stop()
            print(f"server exit status {code}", flush=True)


def _fire(
    server: DnsFilter, rng: random.Random, packets: int, seed: int, check_every: int, rate: int
) -> dict[str, Any]:
    assert server.process is not None
    pid = server.process.pid
    hangs: list[str] = []
    problem = _check(server)  # also fills the cache for www.example.test
    if problem is not None:
        raise RuntimeError(f"the server does not answer before the fuzz: {problem}")
    rss_before = _rss(pid)
    samples = [(0, rss_before["VmRSS"])]
    print(f"before: {rss_before}", flush=True)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
    for sock in sockets:
        sock.setblocking(False)
    target = ("127.0.0.1", server.port)
    kinds: Counter[str] = Counter()
    replies = 0
    checks_lost = 0
    receive_errors = _udp_receive_errors()
    started = time.monotonic()
    next_burst = started
    sent = 0
    try:
        while sent < packets:
            for _ in range(min(BURST, packets - sent)):
                kind, data = dnsfuzz.packet(rng)
                kinds[kind] += 1
                try:
                    sockets[sent % SOCKETS].sendto(data, target)
                except BlockingIOError:
                    kinds["send_would_block"] += 1
                sent += 1
            for sock in sockets:
                replies += _drain(sock)
            if sent % check_every == 0 or sent == packets:
                alive = server.process.poll() is None
                problem, lost = _hung(server) if alive else ("the server exited", 0)
                checks_lost += lost
                if problem is not None:
                    hangs.append(f"after {sent} packets: {problem}")
                rss = _rss(pid)["VmRSS"] if alive else 0
                samples.append((sent, rss))
                speed = sent / (time.monotonic() - started)
                print(
                    f"{sent:>9} packets, {speed:7.0f}/s, VmRSS {rss} kB, {replies} replies,"
                    f" {problem or 'answers'}" + (f" ({lost} UDP tries lost)" if lost else ""),
                    flush=True,
                )
                if not alive:
                    break
            next_burst += BURST / rate
            delay = next_burst - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.5)
        for sock in sockets:
            replies += _drain(sock)
    finally:
        for sock in sockets:
            sock.close()
    took = time.monotonic() - started
    receive_errors = _udp_receive_errors() - receive_errors
    alive = server.process.poll() is None
    if alive:
        problem, lost = _hung(server)
        checks_lost += lost
        if problem is not None:
            hangs.append(f"at the end: {problem}")
        if not wait_until(lambda: server.metric("dnsfilter_inflight_queries") == 0, 10):
            hangs.append(f"{server.metric('dnsfilter_inflight_queries')} queries still in flight")
    rss_after = _rss(pid) if alive else {}
    tracebacks = server.log.count("Traceback")
    return {
        "packets": sent,
        "seed": seed,
        "rate_limit_per_second": rate,
        "seconds": round(took, 1),
        "packets_per_second": round(sent / took),
        "udp_replies": replies,
        "kinds": dict(kinds),
        "crashed": not alive,
        "tracebacks_in_log": tracebacks,
        "hangs": hangs,
        "check_udp_tries_lost": checks_lost,
        "kernel_udp_rcvbuf_errors": receive_errors,
        "cache_entries": server.metric("dnsfilter_cache_entries") if alive else None,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_samples_kb": samples,
        "server_counted": _queries_total(server) if alive else {},
    }


def _queries_total(server: DnsFilter) -> dict[str, int]:
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(server.http_get("/metrics")[1]):
        for sample in family.samples:
            if sample.name == "dnsfilter_queries_total":
                totals[sample.labels["result"]] += int(sample.value)
    return dict(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--check-every", type=int, default=50_000, help="packets between checks")
    parser.add_argument(
        "--rate",
        type=int,
        default=16_000,
        help="packets a second at most (the CI test's 16,000); above what the server keeps up"
        " with, the kernel drops the rest (kernel_udp_rcvbuf_errors in the summary)",
    )
    parser.add_argument(
        "--cache-entries",
        type=int,
        default=100_000,
        help="cache.max_entries (the default's 100,000): the cache is what grows under the fuzz",
    )
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.packets <= 0 or args.rate <= 0 or args.check_every <= 0 or args.check_every % BURST:
        parser.error(f"--packets and --rate must be > 0, --check-every a multiple of {BURST}")
    with tempfile.TemporaryDirectory(prefix="dnsfilter-fuzz-live-") as tmp:
        try:
            summary = run(
                args.packets, args.seed, args.check_every, args.rate, args.cache_entries, Path(tmp)
            )
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    failed = summary["crashed"] or summary["hangs"] or summary["tracebacks_in_log"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
