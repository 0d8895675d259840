"""Operation: running the resolver as a service.

  app         Service: one running resolver (listeners, status endpoint, audit, reloads)
  workers     server.workers: the supervisor and its forked workers
  loading     config and lists read together, as serve and reload read them
  privileges  dropping root once the sockets are bound
  budget      RLIMIT_NOFILE split into shares, and the connection slots drawn on it

May import: errors, names, config, datapath, lists, observe. Never egress or the CLI:
`dnsfilter serve` never loads the egress monitor.
"""
