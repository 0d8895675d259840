"""Unit tests of dnsfilter.config."""
