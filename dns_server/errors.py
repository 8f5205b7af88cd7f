"""The one exception tree: every error the server raises on purpose is a `DnsServerError`.

Anything else that escapes is a bug: a query gets SERVFAIL and a rate-limited log line with the
traceback, a source logs it and keeps the last good data.
"""

from __future__ import annotations


class DnsServerError(Exception):
    """The root: an error this server raises on purpose, with a message meant for a person."""


class ConfigError(DnsServerError):
    """A configuration a person must fix; the message, which names where, is shown as is."""


class StartupError(DnsServerError):
    """The server cannot start (a busy port, unreadable data): one line for the user."""


class MalformedInput(DnsServerError):
    """Data from outside that cannot be read (a manifest, a watch event, an API reply); the message says why.

    The source that read it logs it and keeps what it had.
    """
