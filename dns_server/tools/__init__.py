"""Tools beside the server, on its own configuration, plugins and data: `dns-server explain` (why an
answer is what it is) and `dns-server check` (conformance of any cluster DNS server)."""
