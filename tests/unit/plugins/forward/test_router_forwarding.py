"""The pipeline's side of forwarding, socket-free, judged by dnspython.

The stand-in is tests/unit/helpers.py's `FakeForwarder` (a table of records instead of sockets)
in front of the real `Outbound` and, with a `cache` directive, the real `ForwardCache`, so hits,
truncation and TTLs behave as in production; the sockets are covered by
tests/integration/test_forward.py and, with a real upstream, tests/integration/test_forwarding.py.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dns_server.cluster.records import Namespace, Service
from dns_server.cluster.updates import Put
from dns_server.plugins.cache import CacheSettings
from dns_server.plugins.forward.upstreams import NoAnswer, Overloaded
from dns_server.serving.router import Forward
from tests.clock import Clock
from tests.cluster_data import example_records, registry_with
from tests.doubles import Z, ask, block, fakes, pipeline_for, reply_of

CACHED = block(cache=CacheSettings())
UNCACHED = block(cache=None)


def test_a_forwarded_answer_is_relayed_then_served_from_the_cache_without_a_task() -> None:
    pipeline = pipeline_for(settings=CACHED)

    def check(reply: bytes, query: dns.message.Message) -> None:
        message = dns.message.from_wire(reply)
        assert message.id == query.id
        assert message.question[0].name.to_text() == query.question[0].name.to_text()  # case echoed
        assert message.answer[0][0].to_text() == "192.0.2.10" and not message.flags & dns.flags.AA

    first = dns.message.make_query("WWW.example.COM", "A")
    assert isinstance(pipeline.handle(first.to_wire(), False), Forward)  # a miss: the transport finishes it as a task
    check(reply_of(pipeline, first.to_wire()), first)
    second = dns.message.make_query("www.Example.com", "A")
    hit = pipeline.handle(second.to_wire(), False)
    assert isinstance(hit, bytes)  # a hit: answered at once, from the block's cache
    check(hit, second)
    assert fakes(pipeline)[0].asked == ["www.example.com."]


def test_without_a_cache_directive_nothing_is_kept() -> None:
    """As CoreDNS without `cache`: every forwarded question goes upstream (`--cache-size 0` with the flags)."""
    pipeline = pipeline_for(settings=UNCACHED)
    for _ in range(3):
        query = dns.message.make_query("www.example.com", "A")
        assert isinstance(pipeline.handle(query.to_wire(), False), Forward)
        assert ask(pipeline, query).answer[0].ttl == 300  # as upstream gave it
    assert fakes(pipeline)[0].asked == ["www.example.com."] * 3


def test_forwarded_hits_are_cut_for_small_udp_clients_and_whole_over_tcp() -> None:
    pipeline = pipeline_for(settings=CACHED)
    assert len(ask(pipeline, "big.example.com", "TXT", via_tcp=True).answer[0]) == 6
    udp = ask(pipeline, "big.example.com", "TXT")  # 512 bytes, from the cache
    assert udp.flags & dns.flags.TC and not udp.answer
    assert fakes(pipeline)[0].asked == ["big.example.com."]


def test_a_saturated_forwarder_means_refused_at_once() -> None:
    pipeline = pipeline_for(settings=CACHED)
    fakes(pipeline)[0].full = True
    reply = pipeline.handle(dns.message.make_query("www.example.com", "A").to_wire(), False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("error, rcode", [(Overloaded(), dns.rcode.REFUSED), (NoAnswer("timeout"), dns.rcode.SERVFAIL)])
def test_upstream_errors_become_refused_and_servfail(error: Exception, rcode: int) -> None:
    pipeline = pipeline_for(settings=CACHED)
    fakes(pipeline)[0].fail = error
    query = dns.message.make_query("www.example.com", "A")
    reply = ask(pipeline, query)
    assert reply.rcode() == rcode and reply.id == query.id and not reply.answer


def test_externalname_target_from_upstream_in_one_answer() -> None:
    pipeline = pipeline_for(settings=CACHED)
    for _ in range(2):  # the second time the target comes from the cache, without a task
        query = dns.message.make_query(f"Payments-API.shop.svc.{Z}", "A")
        reply = ask(pipeline, query)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AA
        assert [rrset.to_text() for rrset in reply.answer] == [
            f"Payments-API.shop.svc.{Z}. 5 IN CNAME api.payments.example.com.",
            "api.payments.example.com. 300 IN A 192.0.2.20"]
    assert fakes(pipeline)[0].asked == ["api.payments.example.com."]
    second = pipeline.handle(dns.message.make_query(f"payments-api.shop.svc.{Z}", "A").to_wire(), False)
    assert isinstance(second, bytes)


def test_a_missing_externalname_target_is_nxdomain_with_its_soa() -> None:
    records = [Namespace("shop"), Service("shop", "gone", (), False, "nowhere.example.com", ())]
    reply = ask(pipeline_for(records, settings=CACHED), f"gone.shop.svc.{Z}", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.answer[0].to_text() == f"gone.shop.svc.{Z}. 5 IN CNAME nowhere.example.com."
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_a_name_the_cluster_starts_to_own_is_no_longer_answered_from_the_forwarders_cache() -> None:
    """A reverse name forwarded (and cached) while unknown is answered from the cluster once a service has the IP."""
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry, settings=CACHED)
    query = dns.message.make_query("9.9.96.10.in-addr.arpa", "PTR")
    assert ask(pipeline, query).answer[0][0].to_text() == "upstream.example.com."
    assert isinstance(pipeline.handle(query.to_wire(), False), bytes)  # a hit
    registry.apply([Put(Service("shop", "new", ("10.96.9.9",), False, "", ()))])
    reply = ask(pipeline, query)
    assert reply.answer[0][0].to_text() == f"new.shop.svc.{Z}." and reply.flags & dns.flags.AA
    assert fakes(pipeline)[0].asked == ["9.9.96.10.in-addr.arpa."]


def test_forwarded_replies_are_not_kept_by_query_bytes() -> None:
    """Only cluster answers are reused by exact query bytes: a forwarded one lives as long as the cache keeps it."""
    clock = Clock()
    pipeline = pipeline_for(settings=CACHED, clock=clock)
    first = dns.message.make_query("www.example.com", "A")
    assert ask(pipeline, first).answer  # forwarded; now in the block's cache
    wire = first.to_wire()
    again = bytes((wire[0] ^ 0xFF, wire[1])) + wire[2:]
    hit = pipeline.handle(again, False)
    assert isinstance(hit, bytes) and hit[:2] == again[:2]  # answered from the cache
    clock.now += 100
    assert dns.message.from_wire(reply_of(pipeline, again)).answer[0].ttl == 200  # counted down, not frozen
    clock.now += 300  # the entry expires there
    assert isinstance(pipeline.handle(again, False), Forward)  # so the same bytes go upstream again
