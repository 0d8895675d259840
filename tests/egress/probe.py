"""Send one UDP datagram or TCP payload and say what came back; run inside a namespace.

    python probe.py udp|tcp ADDR PORT HEX_PAYLOAD TIMEOUT

Prints one line: "reply HEX", "timeout", "refused" (ICMP unreachable or TCP reset) or
"dropped" (EPERM: this host's own firewall dropped the packet on output).
"""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> int:
    proto, address, port, payload, timeout = argv
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(float(timeout))
        try:
            sock.connect((address, int(port)))
            sock.sendall(bytes.fromhex(payload))
            reply = sock.recv(65535)
        except TimeoutError:
            print("timeout")
        except ConnectionError:
            print("refused")
        except PermissionError:
            print("dropped")
        else:
            print("reply", reply.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
