"""`trust_client_subnet NETWORK...` (ours): who may tell this block which client a query is for.

Behind a node-local cache (NodeLocal DNSCache) every query comes from the cache's address, so the
plugins whose answer depends on the client (autopath, whoami) would see the cache, not the pod
(CoreDNS issue 4308).  A node-local cache of ours that forwards with `client_subnet` puts its
client's whole address in an EDNS Client Subnet option (protocol/client_subnet.py).  A query whose
source address lies in one of these networks and that carries such an option is answered for that
address: `Request.client()` gives it (port 0: the option carries none) and `Request.client_namespace()`
its pod's namespace, to every plugin alike.  A reply that read either echoes the option with the
whole address as its scope (/32, /128), so the cache keeps it for that client alone: a cache cannot
tell pods of one namespace from another's.

Only trusted sources: the option is anyone's to write, and autopath answers with the namespace of the
pod whose address asks, so a client that could choose the address could make another namespace's
search path its own.  From any other source the option is ignored, and never echoed.
Without this directive the router never looks for the option.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive

NAME = "trust_client_subnet"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def setup(found: Sequence[Directive], context: SetupContext) -> tuple[Network, ...]:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    plugin.no_options(directive)
    if not directive.args:
        raise plugin.arg_error(directive.name)
    networks = []
    for token in directive.args:
        try:
            networks.append(ipaddress.ip_network(token.text))
        except ValueError as error:
            raise plugin.error(token, f"not a network (ADDRESS or ADDRESS/PREFIX, host bits zero): {error}") from None
    return tuple(networks)


def trusted_networks(block: ServerBlock) -> tuple[Network, ...] | None:
    """The networks whose client-subnet options the block takes; None without the directive."""
    networks: tuple[Network, ...] | None = block.setting(NAME)
    return networks


def trusts(networks: tuple[Network, ...], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


PLUGIN = PluginSpec(NAME, setup)
