"""The configuration: one declarative schema, and what is derived from it.

Owns reading a config file into frozen dataclasses (values.py, each key declared once with
its kind, default and doc), the loader with its `file:line: key.path: what is wrong` errors
(loader.py over yamltree.py, which refuses YAML 1.1's guesses), the command-line overrides,
and the JSON Schemas and reference table generated from the declarations (generate.py).
It may import names, errors, blocking's modes and the lists' vocabulary (lists.model,
the refresh bounds); the lists package imports yamltree and schema from here.
"""

from dnsfilter.config.addresses import (
    DOT_PORT,
    HostPort,
    UpstreamServer,
    parse_host_port,
    parse_upstream,
    read_resolv_conf,
)
from dnsfilter.config.loader import (
    default_config_text,
    load_config,
    parse_config,
)
from dnsfilter.config.overrides import split_list_spec, with_overrides
from dnsfilter.config.values import (
    DEFAULT_CONFIG_NAME,
    MAX_WORKERS,
    NON_RECURSIVE,
    PSEUDONYMIZE_MODES,
    RATELIMIT_ACTIONS,
    RESERVED_NETWORK,
    AuditConfig,
    CacheConfig,
    Config,
    EgressConfig,
    ForwardZone,
    IPAddress,
    IPNetwork,
    ListConfig,
    MetricsConfig,
    NetworkConfig,
    PolicyConfig,
    RateLimitConfig,
    ReloadConfig,
    ServerConfig,
    UpstreamConfig,
    default_audit_path,
)

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "DOT_PORT",
    "MAX_WORKERS",
    "NON_RECURSIVE",
    "PSEUDONYMIZE_MODES",
    "RATELIMIT_ACTIONS",
    "RESERVED_NETWORK",
    "AuditConfig",
    "CacheConfig",
    "Config",
    "EgressConfig",
    "ForwardZone",
    "HostPort",
    "IPAddress",
    "IPNetwork",
    "ListConfig",
    "MetricsConfig",
    "NetworkConfig",
    "PolicyConfig",
    "RateLimitConfig",
    "ReloadConfig",
    "ServerConfig",
    "UpstreamConfig",
    "UpstreamServer",
    "default_audit_path",
    "default_config_text",
    "load_config",
    "parse_config",
    "parse_host_port",
    "parse_upstream",
    "read_resolv_conf",
    "split_list_spec",
    "with_overrides",
]
