"""Tools beside the server, on its own configuration, plugins and data: `dns-server explain`."""
