"""The `forward` plugin: names the block's other plugins do not answer go to upstream resolvers.

- setup.py: the directive (`forward FROM TO... { ... }`, several per block, tried in Corefile order);
- here: its place in the chain, which only decides *which* forward directive takes a name (the
  first whose FROM covers it and no `except` zone does); the exchange itself is I/O and happens
  outside the pure chain:
- outbound.py: the block's way out: the `cache` plugin in front of its forwarders (shared
  exchanges, `next` rcodes, serve-stale, prefetch);
- forwarder.py: one forward directive's upstreams over UDP and TCP, with health checks;
- tls.py: its `tls://` upstreams' kept DNS-over-TLS connections;
- upstreams.py: which upstream to ask next (policy, max_fails) and resolv.conf's nameservers.
"""

from __future__ import annotations

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.plugins.forward.setup import ForwardSettings, setup
from dns_server.protocol.answer import Answer, Outcome

NAME = "forward"


class Forward(Handler):
    def __init__(self, settings: tuple[ForwardSettings, ...], block: ServerBlock) -> None:
        self.directives = settings

    def serve(self, request: Request, next: Next) -> Answer:
        for index, forward in enumerate(self.directives):
            if forward.handles(request.name):
                return request.reads.answer(Outcome.FORWARD, forward=index)
        return next(request)


def settings_of(block: ServerBlock) -> tuple[ForwardSettings, ...]:
    settings: tuple[ForwardSettings, ...] = block.setting(NAME) or ()
    return settings


PLUGIN = PluginSpec(NAME, setup, Forward, in_chain=True, other_classes=True)
