"""A socket-free forwarder for the pipeline's unit tests, and a driver that finishes Forwards.

`CannedUpstream` speaks the pipeline's `Upstream` protocol over a table of records but keeps its
replies in the real ForwardCache, so hits, truncation and TTLs behave as in production; the
sockets are covered by tests/integration/test_forward.py and, with a real upstream,
tests/integration/test_forwarding.py.
"""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from dns_server.cache import ForwardCache
from dns_server.pipeline import Forward, Pipeline
from dns_server.upstreams import UpstreamError
from dns_server.wire import query_for_key

RECORDS = {
    ("www.example.com.", "A"): [(300, "192.0.2.10")],
    ("api.payments.example.com.", "A"): [(300, "192.0.2.20")],
    ("9.9.96.10.in-addr.arpa.", "PTR"): [(300, "upstream.example.com.")],
    ("big.example.com.", "TXT"): [(300, f'"{c * 200}"') for c in "abcdef"],
}


class CannedUpstream:
    """The Upstream protocol over RECORDS and a real ForwardCache, without sockets."""

    def __init__(self) -> None:
        self.cache = ForwardCache(100, 1232)
        self.asked: list[str] = []
        self.full = False
        self.fail: UpstreamError | None = None

    def cached(self, key: bytes, limit: int) -> bytes | None:
        entry = self.cache.get(key, 0.0)
        return None if entry is None else entry.render(0.0, limit)

    def saturated(self) -> bool:
        return self.full

    async def forward(self, key: bytes, payload: int, via_tcp: bool, limit: int) -> bytes:
        if self.fail is not None:
            raise self.fail
        query = dns.message.from_wire(query_for_key(key, 7, payload))
        question = query.question[0]
        self.asked.append(question.name.to_text())
        reply = dns.message.make_response(query)
        found = RECORDS.get((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        if found is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            reply.authority.append(dns.rrset.from_text(
                "example.com.", 300, "IN", "SOA", "ns.example.com. h.example.com. 1 7200 1800 86400 60"))
        for ttl, text in found or []:
            reply.answer.append(dns.rrset.from_text(question.name, ttl, "IN", question.rdtype, text))
        return self.cache.store(key, reply.to_wire(max_size=65535), 0.0).render(0.0, limit)


def handle(pipeline: Pipeline, query: dns.message.Message, via_tcp: bool = False) -> dns.message.Message:
    """The pipeline's reply, finishing a Forward the way a transport does."""
    reply = pipeline.handle(query.to_wire(), via_tcp)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)
