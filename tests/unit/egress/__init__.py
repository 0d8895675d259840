"""Unit tests of dnsfilter.egress (those that need no root; tests/egress has the others)."""
