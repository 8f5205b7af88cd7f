"""One server block's query chain: its plugins' handlers in plugin.cfg order, as one pure function.

`Chain.resolve(name, qtype, snapshot, peer, ...) -> Answer`: the first handler gets the request and a
`next` that runs the rest of the chain; the end of the chain answers SERVFAIL with CoreDNS's "no
next plugin found", naming the last plugin of the block that has a handler in CoreDNS.  The `next`
functions are made once per chain, not per question.  `admission` and `undecodable` are the
rcodes the server gives before any block's chain runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from dns_server.chain.plugin import Handler, Next, Peer, Question, Reads, Request
from dns_server.cluster.snapshot import ServiceKey, Snapshot
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.codes import BADVERS, CLASS_IN, FORMERR, NOERROR, NOTIMP, OPCODE_QUERY, REFUSED
from dns_server.protocol.wire import Query

NO_PLUGIN = "no next plugin found"  # CoreDNS's error when the chain ends without an answer


@dataclass(slots=True)
class Step:
    """One plugin's turn in a traced question: what it was asked, what it passed on, what it returned."""

    plugin: str
    name: str
    qtype: int
    depth: int  # how many plugins called before it are still waiting for their `next`
    passed: list[tuple[str, int, Answer]] = field(default_factory=list)  # what it asked `next`, and got
    answer: Answer | None = None


class Chain:
    """The handlers of one block, each given the rest of the chain as `next`."""

    def __init__(self, handlers: Sequence[tuple[str, Handler]], last: str = "", other_classes: bool = False) -> None:
        self.handlers = dict(handlers)
        self.other_classes = other_classes  # one of its plugins takes classes other than IN
        reason = f"plugin/{last}: {NO_PLUGIN}" if last else NO_PLUGIN

        def end(request: Request) -> Answer:
            return request.reads.answer(Outcome.SERVFAIL, reason=reason)

        first: Next = end
        for _, handler in reversed(handlers):
            first = _link(handler, first)
        self._first = first
        self._end = end
        self._order = tuple(handlers)
        self._rewrites = tuple(handler for _, handler in handlers
                               if type(handler).forwarded is not Handler.forwarded)

    def resolve(self, name: str, qtype: int, snapshot: Snapshot, peer: Peer = None, qclass: int = CLASS_IN,
                via_tcp: bool = False, options: bytes | None = None, local: Peer = None) -> Answer:
        """Answer one question (name: lower case, no trailing dot) as the block's plugins would."""
        return self._first(Request(name, qtype, Reads(snapshot), peer, qclass, via_tcp, options, local))

    def trace(self, name: str, qtype: int, snapshot: Snapshot, peer: Peer = None) -> tuple[Answer, list[Step]]:
        """`resolve`, recording each plugin's step in the order the plugins were called."""
        steps: list[Step] = []
        first: Next = self._end
        for plugin, handler in reversed(self._order):
            first = _traced(plugin, handler, first, steps)
        return first(Request(name, qtype, Reads(snapshot), peer)), steps

    def forwarded(self, reply: bytes) -> bytes:
        """A reply from upstream, as the block's plugins change every reply (loadbalance)."""
        for handler in self._rewrites:
            reply = handler.forwarded(reply)
        return reply

    def stub_questions(self, snapshot: Snapshot, services: Iterable[ServiceKey] | None = None) -> Iterator[Question]:
        """What the block's handlers list as worth answering ahead (Handler.stub_questions), as they list it."""
        for handler in self.handlers.values():
            yield from handler.stub_questions(snapshot, services)

    def handler(self, name: str) -> Handler | None:
        return self.handlers.get(name)


def _link(handler: Handler, rest: Next) -> Next:
    serve = handler.serve

    def step(request: Request) -> Answer:
        return serve(request, rest)

    return step


def _traced(plugin: str, handler: Handler, rest: Next, steps: list[Step]) -> Next:
    def step(request: Request) -> Answer:
        record = Step(plugin, request.name, request.qtype, sum(1 for s in steps if s.answer is None))
        steps.append(record)

        def onward(passed: Request) -> Answer:
            answer = rest(passed)
            record.passed.append((passed.name, passed.qtype, answer))
            return answer

        record.answer = handler.serve(request, onward)
        return record.answer

    return step


def admission(query: Query, zone: str | None, other_classes: bool = False) -> int:
    """What the server answers itself before any plugin runs (CoreDNS's core/dnsserver), or NOERROR to
    go on: NOTIMP for an opcode other than QUERY, BADVERS for an EDNS version other than 0 (RFC 6891
    6.1.3), REFUSED for a name no server block serves (`zone` None) and for a class other than IN
    unless the listener has a plugin that takes other classes (`other_classes`)."""
    if query.opcode != OPCODE_QUERY:
        return NOTIMP
    if query.edns and query.edns_version != 0:
        return BADVERS
    if zone is None or (query.qclass != CLASS_IN and not other_classes):
        return REFUSED
    return NOERROR


def undecodable(data: bytes) -> int:
    """The rcode for a query whose question cannot be read: FORMERR, or NOTIMP for an opcode other than QUERY."""
    return FORMERR if (data[2] >> 3) & 0xF == OPCODE_QUERY else NOTIMP
