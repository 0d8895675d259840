"""Blocklists: the list formats, where lists come from, and the list maintainers' tools.

  model        BlockList, DomainEntry, NetworkEntry, roles and categories (pure values)
  formats      detect_format / parse_list over the readers: yamlformat, hostsformat,
               plainformat, adblock, rpz (textlist is their shared line reader)
  location     is_url, shipped:, relative paths, refresh bounds (imports nothing of dnsfilter)
  sources      ListSource: a file, or a URL with its last good copy; HostResolver
  catalog      the configured lists as sources, and loading them in order
  refresh      ListRefresher: URL lists downloaded again in the background
  export       lists as unbound, dnsmasq, RPZ, hosts, nftables
  lint, diff, stats   the maintainers' checks
  commands     `dnsfilter lists ...`: an entry point, like dnsfilter.cli

May import: errors, names, yamltree, config (but config imports model, location, formats
and the readers under it, so those import no config), datapath's pure modules (blocking,
wire, policy) and datapath.upstream's TLS settings for downloads. Never observe or operate:
only commands, the CLI of this package, may import them (operate.loading, observe.explain).
"""
