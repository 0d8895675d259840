"""Unit tests of dnsfilter.lists."""
