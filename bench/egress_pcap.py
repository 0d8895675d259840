"""Write a large synthetic capture for measuring `dnsfilter monitor --pcap`, and time it.

    .venv/bin/python bench/egress_pcap.py /tmp/egress-1m.pcap --packets 1000000
    .venv/bin/python bench/egress_pcap.py /tmp/egress-1m.pcap --run bench/egress.yaml

The mix imitates a mirror port in front of clients: mostly established HTTPS, some plain
HTTP and QUIC, DNS to the approved resolver, and a few per cent of bypasses (DNS and DoT to
other resolvers, ClientHellos naming listed names, flows into banned prefixes), spread over
4096 clients and many source ports so that the flow table and address caches work as they
would. Addresses are documentation ranges; nothing is sent anywhere. Checksums are not
fixed up after the addresses are patched in: the monitor does not read them.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

#: The resolver bench/egress.yaml approves, one it does not, and an address in its banned prefix.
APPROVED = "198.51.100.53"
OTHER = "198.51.100.99"
BANNED = "203.0.113.10"


def _ether() -> Packet:
    # Both addresses given: with a default destination scapy would ARP for it on this host.
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def client_hello(name: str) -> bytes:
    sni = name.encode("ascii")
    server_name = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    groups = struct.pack("!HHH", 10, 4, 2) + b"\x00\x1d"
    extensions = groups + server_name
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + b"\x00\x02\x13\x01\x01\x00"
    body += struct.pack("!H", len(extensions)) + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def templates() -> list[tuple[float, bytes]]:
    def tcp(dst: str, dport: int, payload: bytes = b"", flags: str = "A") -> Packet:
        packet = _ether() / IP(src="10.1.0.1", dst=dst) / TCP(dport=dport, flags=flags)
        return packet / Raw(payload) if payload else packet

    def udp(dst: str, dport: int, payload: Packet | bytes) -> Packet:
        return _ether() / IP(src="10.1.0.1", dst=dst) / UDP(dport=dport) / payload

    # (share of packets, template); the client address and port are patched per packet.
    mix: list[tuple[float, Packet]] = [
        (0.55, tcp("198.51.100.80", 443, bytes(1200))),
        (0.10, tcp("198.51.100.80", 443)),
        (0.05, tcp("198.51.100.81", 80, b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")),
        (0.08, udp("198.51.100.82", 443, bytes(1200))),
        (0.08, udp(APPROVED, 53, DNS(qd=DNSQR(qname="www.example.org")))),
        (0.03, tcp("198.51.100.80", 443, client_hello("www.example.org"), "PA")),
        (0.02, udp(OTHER, 53, DNS(qd=DNSQR(qname="weixin.qq.com")))),
        (0.01, tcp(OTHER, 853, flags="S")),
        (0.02, tcp("198.51.100.80", 443, client_hello("dns.google"), "PA")),
        (0.02, tcp(BANNED, 443, flags="S")),
        (0.02, udp(BANNED, 443, bytes(1200))),
        (0.01, _ether() / IP(src="10.1.0.1", dst="198.51.100.1") / ICMP()),
        (0.01, _ether() / ARP(psrc="10.1.0.1", pdst="10.1.0.254")),
    ]
    return [(share, bytes(packet)) for share, packet in mix]


def write(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    shares, frames = zip(*templates(), strict=True)
    choices = rng.choices(range(len(frames)), weights=shares, k=count)
    stamp = 1_700_000_000.0
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for index in choices:
            frame = bytearray(frames[index])
            if frame[12:14] == b"\x08\x00":
                # client 10.1.x.y (4096 of them) and an ephemeral source port
                client = rng.randrange(4096)
                frame[28:30] = bytes((client >> 8, client & 0xFF))
                port = rng.randrange(32768, 61000)
                frame[34:36] = port.to_bytes(2, "big")
            stamp += 0.00002
            sec = int(stamp)
            usec = int((stamp - sec) * 1_000_000)
            out.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            out.write(frame)


def run(path: Path, config: Path | None) -> None:
    from dnsfilter.config import load_config
    from dnsfilter.datapath.policy import NetworkMap
    from dnsfilter.egress.detect import Detector
    from dnsfilter.egress.monitor import Monitor, run_pcap
    from dnsfilter.egress.plan import build_plan
    from dnsfilter.egress.sink import CountingSink
    from dnsfilter.lists.catalog import load_lists

    loaded = load_config(config)
    base = config.resolve().parent if config else Path.cwd()
    lists = load_lists(((item.name, item.file) for item in loaded.lists), base)
    plan = build_plan(loaded, lists)
    counts = CountingSink()
    networks = NetworkMap((n.name, n.prefixes) for n in loaded.networks)
    monitor = Monitor(Detector(plan, networks), [counts])
    started, cpu_started = time.perf_counter(), time.process_time()
    run_pcap(path, monitor)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    packets = monitor.stats.packets
    # CPU time as well as wall time: on a shared machine the wall clock measures the others.
    print(
        f"{packets} packets in {elapsed:.2f} s wall ({packets / elapsed:,.0f} packets/s), "
        f"{cpu:.2f} s CPU ({packets / cpu:,.0f} packets/s of CPU)"
    )
    print(f"events by kind: {counts.by_kind()}; errors: {monitor.stats.errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--run", type=Path, metavar="CONFIG", help="time the monitor instead")
    args = parser.parse_args()
    if args.run:
        run(args.path, args.run)
    else:
        write(args.path, args.packets, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
