"""dnsfilter: a protective DNS resolver."""

__version__ = "0.1.0"
