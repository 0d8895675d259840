"""Observation: what the running resolver tells its operators.

  metrics     every metric declaration: Metrics(registry) with children bound at start-up
  querylog    the audit log of blocked (and allowed) queries: SQLite and JSON lines sinks
  report      `dnsfilter report`: the audit store summed up per device
  explain     `dnsfilter lists explain`: why a name is answered as it is, stage by stage
  httpserver  the status endpoint: /metrics, /healthz, /readyz

May import: errors, names, config, datapath (explain runs the resolver's own stages), lists
(the list model), egress.detect (report reads bypass events) and operate.budget (the
status endpoint's connection slots). metrics imports nothing of dnsfilter but its version,
so every package may import it. Never the rest of operate, nor the CLI.
"""
