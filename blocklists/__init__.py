"""The blocklists shipped with dnsfilter, installed as package data (see README.md here)."""
