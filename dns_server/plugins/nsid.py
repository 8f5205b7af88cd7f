"""The `nsid` plugin: `nsid [DATA]`, the server's identifier in replies to queries that ask for it (RFC 5001).

A query whose OPT record carries an NSID option gets, in its reply's OPT record, an NSID option
holding DATA (the words of the line joined by spaces; by default the machine's host name, as
CoreDNS's `os.Hostname()`).  Whether the query asks is part of its question key
(`protocol.wire.MODE_NSID`), so the answer table keeps the reply with the option apart from the
one without, and the router writes the option once, when it encodes the answer
(`identified`).  Replies from upstream get it as they are relayed.  As in CoreDNS, where nsid wraps
the reply writer of the plugins after it, replies the server writes itself get none: the rcodes
given before any plugin runs, and the SERVFAIL and REFUSED of an upstream that failed or a chain
with no plugin for the name.

The plugin acts around the query chain (no handler): the router, which sees every reply, applies it.
"""

from __future__ import annotations

import socket
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.protocol.codes import EDNS_OPTION, NSID
from dns_server.protocol.encode import fit, with_option
from dns_server.protocol.wire import MODE_NSID

NAME = "nsid"


def setup(found: Sequence[Directive], context: SetupContext) -> bytes:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    plugin.no_options(directive)
    if directive.args:
        return " ".join(token.text for token in directive.args).encode()
    return (socket.gethostname() or "localhost").encode()


PLUGIN = PluginSpec(NAME, setup, in_chain=True)


def nsid_of(block: ServerBlock) -> bytes | None:
    """The block's NSID, None when it has no `nsid`."""
    data: bytes | None = block.setting(NAME)
    return data


def identified(reply: bytes, nsid: bytes | None, key: bytes, limit: int) -> bytes:
    """A reply to the query of this question key, with the NSID option when the query asked for it
    and the block has `nsid`, cut to `limit` bytes again."""
    if nsid is None or not key[-1] & MODE_NSID:
        return reply
    return fit(with_option(reply, EDNS_OPTION.pack(NSID, len(nsid)) + nsid), limit)
