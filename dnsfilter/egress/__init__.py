"""Egress: watch for traffic that went around the resolver, and close the doors it used.

  plan       EgressPlan from the config and lists: approved resolvers, banned prefixes
  decode     captured frames to Facts by hand (addresses, ports, DNS name, TLS server name)
  tls        the server name of a TLS ClientHello
  detect     Facts to bypass Events (pure)
  sink       EventSink protocol; counting, line-printing, metric and audit sinks
  monitor    the capture loops (scapy, imported lazily) feeding Monitor
  endpoint   the monitor's /metrics, /healthz, /readyz: StatusServer in a thread of its own
  nftables   the plan as an nftables ruleset
  cli        `dnsfilter monitor` and `dnsfilter egress export`

Scapy is imported only inside monitor's capture functions: importing dnsfilter, or running
`dnsfilter serve`, never loads it. No other package imports scapy.

May import: errors, names, config, datapath (wire, policy), lists (the model), observe
(metrics, querylog, httpserver) and operate.loading (config and lists as serve reads them).
Outside egress only the CLI, lists.export (the nftables format) and observe.report (bypass
events) import it.
"""
