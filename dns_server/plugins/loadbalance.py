"""The `loadbalance` plugin: A, AAAA and MX records in a different order from one reply to the next.

CoreDNS shuffles them per reply.  Here an answer from the chain carries a few precomputed rotations
(each reply starts at the next record: the answer table hands them out in turn, and the hot path
stays a lookup), and a forwarded reply is rotated on its bytes (`protocol.encode.rotate`).
"""

from __future__ import annotations

from typing import Sequence

from dnslib import QTYPE

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.protocol.answer import Answer
from dns_server.protocol.encode import rotate

NAME = "loadbalance"
ROTATED = (QTYPE.A, QTYPE.AAAA, QTYPE.MX)  # what CoreDNS's loadbalance shuffles
MAX_ROTATIONS = 8

UNSUPPORTED = ("prefer",)  # CoreDNS options this server refuses by name


def setup(found: Sequence[Directive], context: SetupContext) -> bool:
    plugin = Reader("loadbalance", UNSUPPORTED)
    for directive in found:
        if directive.args:
            policy = directive.args[0]
            if policy.text == "weighted":
                raise plugin.error(policy, "policy 'weighted' is not supported by this server")
            if policy.text != "round_robin":
                raise plugin.error(policy, f"unknown policy: {policy.text}")
            if len(directive.args) > 1:
                raise plugin.error(directive.args[1], f"unknown property for {policy.text}")
        plugin.no_options(directive)
    return True


class LoadBalance(Handler):
    def __init__(self, settings: bool, block: ServerBlock) -> None:
        self._turn = 0

    def serve(self, request: Request, next: Next) -> Answer:
        answer = next(request)
        positions = [i for i, rr in enumerate(answer.answer) if rr.rtype in ROTATED]
        if len(positions) < 2:
            return answer
        rotations = []
        for turn in range(min(len(positions), MAX_ROTATIONS)):
            records = list(answer.answer)
            moved = positions[turn:] + positions[:turn]
            for at, source in zip(positions, moved):
                records[at] = answer.answer[source]
            rotations.append(tuple(records))
        return answer._replace(rotations=tuple(rotations))

    def forwarded(self, reply: bytes) -> bytes:
        self._turn += 1
        return rotate(reply, self._turn)


PLUGIN = PluginSpec(NAME, setup, LoadBalance, in_chain=True)
