"""Unit tests of dnsfilter.observe."""
