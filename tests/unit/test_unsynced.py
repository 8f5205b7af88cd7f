"""Before the first sync: cluster names are SERVFAIL, never NXDOMAIN; other names are not held up.

The forwarder is built in parallel (issue 3), so "names outside the cluster are served while the
API has not synced" is checked here at the pipeline level, with a stand-in upstream that answers
every forwarded query; the process-level test (tests/integration/test_kube_api.py) checks the
cluster side over the wire.
"""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rrset
from dnslib import RR as WireRR

from dns_server.config import Config
from dns_server.pipeline import Forward, Pipeline
from dns_server.records import ENDPOINT_SLICE, NAMESPACE, SERVICE, Namespace, Port, Service
from dns_server.registry import Registry, Replace
from dns_server.wire import Query

Z = "cluster.local"
CONFIG = Config(listen=(("127.0.0.1", 5353),))


class AnsweringUpstream:
    """Answers every forwarded question with one A record, as a reachable resolver would."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def forward(self, data: bytes, query: Query, via_tcp: bool) -> bytes:
        self.asked.append(query.name)
        request = dns.message.from_wire(data)
        reply = dns.message.make_response(request)
        reply.answer.append(dns.rrset.from_text(request.question[0].name, 60, "IN", "A", "192.0.2.1"))
        return reply.to_wire()

    async def lookup(self, name: str, qtype: int, *, do: bool, via_tcp: bool) -> tuple[int, list[WireRR]]:
        self.asked.append(name)
        return 0, []


def ask(pipeline: Pipeline, name: str, qtype: str = "A") -> dns.message.Message:
    reply = pipeline.handle(dns.message.make_query(name, qtype).to_wire(), False)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def test_outside_names_are_answered_while_cluster_names_wait_for_the_sync() -> None:
    registry = Registry(required_kinds={NAMESPACE, SERVICE, ENDPOINT_SLICE})
    upstream = AnsweringUpstream()
    pipeline = Pipeline(CONFIG, registry.snapshot, upstream)
    registry.subscribe(pipeline.publish)

    outside = ask(pipeline, "example.com")
    assert outside.rcode() == dns.rcode.NOERROR and outside.answer[0][0].to_text() == "192.0.2.1"
    assert upstream.asked == ["example.com"]
    for name in (f"web.shop.svc.{Z}", f"shop.svc.{Z}", f"10-0-0-1.shop.pod.{Z}", f"a.b.c.web.shop.svc.{Z}"):
        assert ask(pipeline, name).rcode() == dns.rcode.SERVFAIL, name
    assert ask(pipeline, f"dns-version.{Z}", "TXT").rcode() == dns.rcode.NOERROR

    # services and namespaces listed, slices not yet: still not synced
    registry.apply([Replace(frozenset({NAMESPACE}), (Namespace("shop"),)),
                    Replace(frozenset({SERVICE}), (Service("shop", "web", ("10.96.0.1",), False, "",
                                                           (Port("http", "TCP", 80),)),))])
    assert ask(pipeline, f"web.shop.svc.{Z}").answer[0][0].to_text() == "10.96.0.1"  # what exists is served
    assert ask(pipeline, f"nope.shop.svc.{Z}").rcode() == dns.rcode.SERVFAIL
    registry.apply([Replace(frozenset({ENDPOINT_SLICE}), ())])
    assert ask(pipeline, f"nope.shop.svc.{Z}").rcode() == dns.rcode.NXDOMAIN
    assert ask(pipeline, "example.org").rcode() == dns.rcode.NOERROR
    assert upstream.asked == ["example.com", "example.org"]
