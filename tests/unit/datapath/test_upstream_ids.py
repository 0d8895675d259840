"""dnsfilter.datapath.upstream.random_id: batched CSPRNG message IDs, fresh in every forked
worker."""

from __future__ import annotations

import os

from dnsfilter.datapath.upstream import random_id


def test_ids_span_16_bits_across_refills() -> None:
    ids = [random_id() for _ in range(10_000)]  # more than one batch of 4096
    assert all(0 <= i <= 0xFFFF for i in ids)
    # 10,000 draws from 65,536 values: about 9,300 distinct expected, far fewer if repeating.
    assert len(set(ids)) > 8_500


def test_forked_child_does_not_repeat_the_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next IDs, as the parent's next ones would be without refill
        os.write(write_end, b",".join(str(random_id()).encode() for _ in range(8)))
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        child = [int(n) for n in pipe.read().split(b",")]
    parent = [random_id() for _ in range(8)]
    assert child != parent
