"""Tools on top of the server: `dns-server check` (conformance of any cluster DNS server)."""
