"""The benchmark: dnsfilter against unbound, dnsmasq and a bare echo ceiling, on one core each.

``python bench/run.py --help`` (docs/developers/benchmark.md). Modules:

    workload.py  the generated blocklist, the upstream zone and the three dnsperf query files
    upstream.py  nsd on loopback serving the wildcard zone (rate limiting off)
    servers.py   how each server under test is configured, started, probed and stopped
    dnsperf.py   one dnsperf run and what it measured (QPS, mean and p99 latency)
    report.py    the markdown table and the ratios against the targets of issue 5
    run.py       the command: runs everything in turn from one seeded workload
    echo.py      the ceiling: a uvloop UDP server that only sets the QR bit
"""
