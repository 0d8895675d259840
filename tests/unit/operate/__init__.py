"""Unit tests of dnsfilter.operate."""
