"""The chain itself: handlers in order with `next`, its end, the reply hook, and the server's own rcodes."""

from __future__ import annotations

import dns.message
import pytest

from dns_server.chain.chain import NO_PLUGIN, Chain, admission, undecodable
from dns_server.chain.plugin import Handler, Next, Request
from dns_server.cluster.registry import Registry
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.codes import BADVERS, FORMERR, NOERROR, NOTIMP, REFUSED
from dns_server.protocol.wire import decode_query

SNAPSHOT = Registry().snapshot


class Tag(Handler):
    """Answers names ending in its tag; appends its tag to forwarded replies."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def serve(self, request: Request, next: Next) -> Answer:
        if request.name.endswith(self.tag):
            return request.reads.answer(Outcome.ANSWER, plugin=self.tag)
        return next(request)

    def forwarded(self, reply: bytes) -> bytes:
        return reply + self.tag.encode()


def test_each_handler_passes_what_it_does_not_answer_to_the_next() -> None:
    chain = Chain([("a", Tag("a")), ("b", Tag("b"))])
    assert chain.resolve("x.a", 1, SNAPSHOT).plugin == "a"
    assert chain.resolve("x.b", 1, SNAPSHOT).plugin == "b"


def test_past_the_last_handler_is_servfail_naming_the_last_plugin() -> None:
    answer = Chain([("a", Tag("a"))], last="forward").resolve("x.c", 1, SNAPSHOT)
    assert answer.outcome is Outcome.SERVFAIL and answer.reason == f"plugin/forward: {NO_PLUGIN}"
    assert Chain([]).resolve("x", 1, SNAPSHOT).reason == NO_PLUGIN


def test_a_forwarded_reply_passes_every_handler_that_changes_replies_in_order() -> None:
    chain = Chain([("a", Tag("a")), ("plain", Handler()), ("b", Tag("b"))])
    assert chain.forwarded(b"reply:") == b"reply:ab"


def query(*, opcode: int = 0, edns: int | None = None, rdclass: str = "IN") -> bytes:
    message = dns.message.make_query("a.example.", "A", rdclass=rdclass, use_edns=edns if edns is not None else False)
    message.set_opcode(opcode)
    return message.to_wire()


@pytest.mark.parametrize("wire, zone, other_classes, rcode", [
    (query(), "", False, NOERROR),
    (query(opcode=4), "", False, NOTIMP),
    (query(opcode=1), "", False, NOTIMP),
    (query(edns=1), "", False, BADVERS),
    (query(), None, False, REFUSED),
    (query(rdclass="CH"), "", False, REFUSED),
    (query(rdclass="CH"), "", True, NOERROR),
    (query(rdclass="CH"), None, True, REFUSED),
])
def test_what_the_server_answers_before_any_plugin(wire: bytes, zone: str | None, other_classes: bool,
                                                   rcode: int) -> None:
    assert admission(decode_query(wire), zone, other_classes) == rcode


@pytest.mark.parametrize("opcode, rcode", [(0, FORMERR), (1, NOTIMP), (2, NOTIMP), (4, NOTIMP), (5, NOTIMP)])
def test_an_unreadable_question_is_formerr_unless_the_opcode_is_not_query(opcode: int, rcode: int) -> None:
    assert undecodable(query(opcode=opcode)[:13]) == rcode  # the question cut short
