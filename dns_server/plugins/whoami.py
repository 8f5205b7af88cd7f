"""The `whoami` plugin: tells the client its own address, port and transport (CoreDNS 1.14's whoami).

It answers every question that reaches it (it is the last plugin in CoreDNS's order, so names a
block's kubernetes or forward takes never do): NOERROR with AA and an empty answer section; in the
additional section the client's address as A (or AAAA) under the name asked, then an SRV record
`_udp.<name>` (or `_tcp.<name>`) with priority 0, weight 0, the client's port and target `.`; all
with TTL 0 and the question's class.  The answer depends on the client (`Request.client()`): the
router never keeps it for anyone else.
"""

from __future__ import annotations

import ipaddress
from typing import Sequence

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.codes import AAAA, SRV, A
from dns_server.protocol.names import canonical_address

NAME = "whoami"


def setup(found: Sequence[Directive], context: SetupContext) -> bool:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    plugin.no_args(directive)
    plugin.no_options(directive)
    return True


class Whoami(Handler):
    def serve(self, request: Request, next: Next) -> Answer:
        client = request.client()
        additional: tuple[RR, ...] = ()
        if client is not None:
            address = canonical_address(client.address)  # an IPv4 client of a dual-stack socket is an A
            rtype = A if ipaddress.ip_address(address).version == 4 else AAAA
            proto = "_tcp" if client.via_tcp else "_udp"
            additional = (RR(request.name, rtype, 0, address),
                          RR(f"{proto}.{request.name}" if request.name else proto, SRV, 0, (0, 0, client.port, "")))
        answer = request.reads.answer(Outcome.ANSWER, additional=additional, plugin=NAME)
        return answer._replace(record_class=request.qclass)


PLUGIN = PluginSpec(NAME, setup, lambda settings, block: Whoami(), in_chain=True)
