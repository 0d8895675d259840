"""Unit tests of dnsfilter.datapath."""
