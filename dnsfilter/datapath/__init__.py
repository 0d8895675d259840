"""The datapath: a query's bytes in, a reply's bytes out, and the upstreams in between.

  wire       parse_query by hand, reply builders on bytes, scan_response (pure)
  scrub      only the question's chain of an upstream answer gets through (pure)
  chase      CNAME chains that stop short, and the question that goes on (pure)
  blocking   the sinkhole replies of each block mode (pure)
  policy     client networks and list tables: Policy.decide(q) -> Verdict (pure)
  cache      AnswerCache: what is kept, for how long, served with aged TTLs (pure)
  ratelimit  per-client query rates and shares
  upstream   UDP, TCP and DNS-over-TLS upstreams, groups and failover (asyncio)
  resolver   the chain, built in one function: answer_now / resolve
  server     the UDP and TCP listeners (asyncio)
  fastpath   which UDP datapath runs: the compiled loop (_fastpath.pyx, Cython) in front
             of server's UdpListener, or the listener alone (DNSFILTER_PURE=1)

May import: errors, names, config, lists.model (the tables policy builds from),
observe.metrics (the counters it bumps), observe.querylog (the audit sink of server and
fastpath) and
operate.budget (server's connection slots are drawn on the descriptor budget). The pure
modules import no asyncio, socket or ssl. Never observe.report, observe.explain,
observe.httpserver, the rest of operate, egress or the CLI.
"""
