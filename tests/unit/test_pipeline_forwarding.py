"""The pipeline's side of forwarding, with a socket-free forwarder, judged by dnspython.

The stand-in is tests/doubles.py's `CannedUpstream`: a table of records kept in the real ForwardCache.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from dns_server.cache import ForwardCache
from dns_server.config import Config
from dns_server.pipeline import Forward, Pipeline
from dns_server.records import Namespace, Service
from dns_server.registry import Put
from dns_server.upstreams import NoAnswer, Overloaded
from tests.cluster_data import example_records, registry_with
from tests.doubles import CannedUpstream, handle

Z = "cluster.local"
CONFIG = Config(listen=(("127.0.0.1", 5353),))


def pipeline_with(upstream: CannedUpstream, records: list | None = None) -> Pipeline:
    return Pipeline(CONFIG, registry_with(records if records is not None else example_records()).snapshot, upstream)


def test_a_forwarded_answer_is_relayed_then_served_from_the_cache_without_a_task() -> None:
    upstream = CannedUpstream()
    pipeline = pipeline_with(upstream)

    def check(reply: bytes, query: dns.message.Message) -> None:
        message = dns.message.from_wire(reply)
        assert message.id == query.id
        assert message.question[0].name.to_text() == query.question[0].name.to_text()  # case echoed
        assert message.answer[0][0].to_text() == "192.0.2.10" and not message.flags & dns.flags.AA

    first = dns.message.make_query("WWW.example.COM", "A")
    forward = pipeline.handle(first.to_wire(), False)
    assert isinstance(forward, Forward)  # a miss: the transport finishes it as a task
    relayed = asyncio.run(pipeline.complete(forward))
    assert relayed is not None
    check(relayed, first)
    second = dns.message.make_query("www.Example.com", "A")
    hit = pipeline.handle(second.to_wire(), False)
    assert isinstance(hit, bytes)  # a hit: answered at once, from the forwarder's cache
    check(hit, second)
    assert upstream.asked == ["www.example.com."]


def test_forwarded_hits_are_truncated_for_small_udp_clients_and_whole_over_tcp() -> None:
    upstream = CannedUpstream()
    pipeline = pipeline_with(upstream)
    assert len(handle(pipeline, dns.message.make_query("big.example.com", "TXT"), via_tcp=True).answer[0]) == 6
    udp = handle(pipeline, dns.message.make_query("big.example.com", "TXT"))  # 512 bytes, from the cache
    assert udp.flags & dns.flags.TC and not udp.answer
    assert upstream.asked == ["big.example.com."]


def test_saturated_forwarder_means_refused_at_once() -> None:
    upstream = CannedUpstream()
    upstream.full = True
    reply = pipeline_with(upstream).handle(dns.message.make_query("www.example.com", "A").to_wire(), False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


def test_upstream_errors_become_refused_and_servfail() -> None:
    upstream = CannedUpstream()
    pipeline = pipeline_with(upstream)
    for error, rcode in ((Overloaded(), dns.rcode.REFUSED), (NoAnswer(), dns.rcode.SERVFAIL)):
        upstream.fail = error
        query = dns.message.make_query(f"www{rcode}.example.com", "A")
        reply = handle(pipeline, query)
        assert reply.rcode() == rcode and reply.id == query.id


def test_externalname_target_from_upstream_in_one_answer() -> None:
    upstream = CannedUpstream()
    pipeline = pipeline_with(upstream)
    for _ in range(2):  # the second time the target comes from the cache, without a task
        query = dns.message.make_query(f"Payments-API.shop.svc.{Z}", "A")
        reply = handle(pipeline, query)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AA
        assert [rrset.to_text() for rrset in reply.answer] == [
            f"Payments-API.shop.svc.{Z}. 5 IN CNAME api.payments.example.com.",
            "api.payments.example.com. 300 IN A 192.0.2.20"]
    assert upstream.asked == ["api.payments.example.com."]
    second = pipeline.handle(dns.message.make_query(f"payments-api.shop.svc.{Z}", "A").to_wire(), False)
    assert isinstance(second, bytes)


def test_a_missing_externalname_target_is_nxdomain_with_its_soa() -> None:
    upstream = CannedUpstream()
    records = [Namespace("shop"), Service("shop", "gone", (), False, "nowhere.example.com", ())]
    reply = handle(pipeline_with(upstream, records), dns.message.make_query(f"gone.shop.svc.{Z}", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.answer[0].to_text() == f"gone.shop.svc.{Z}. 5 IN CNAME nowhere.example.com."
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_a_name_the_cluster_starts_to_own_is_no_longer_answered_from_the_forwarders_cache() -> None:
    """A reverse name forwarded (and cached) while unknown is answered from the cluster once a service has the IP."""
    upstream = CannedUpstream()
    registry = registry_with(example_records())
    pipeline = Pipeline(CONFIG, registry.snapshot, upstream)
    registry.subscribe(pipeline.publish)
    query = dns.message.make_query("9.9.96.10.in-addr.arpa", "PTR")
    assert handle(pipeline, query).answer[0][0].to_text() == "upstream.example.com."
    assert handle(pipeline, query).answer[0][0].to_text() == "upstream.example.com."  # a hit
    registry.apply([Put(Service("shop", "new", ("10.96.9.9",), False, "", ()))])
    reply = handle(pipeline, query)
    assert reply.answer[0][0].to_text() == f"new.shop.svc.{Z}." and reply.flags & dns.flags.AA


def test_forwarded_replies_are_not_kept_by_query_bytes() -> None:
    """Only cluster answers are reused by exact query bytes: a forwarded one lives as long as the forwarder's."""
    upstream = CannedUpstream()
    pipeline = pipeline_with(upstream)
    first = dns.message.make_query("www.example.com", "A")
    assert handle(pipeline, first).answer  # forwarded; now in the forwarder's cache
    wire = first.to_wire()
    again = bytes((wire[0] ^ 0xFF, wire[1])) + wire[2:]
    assert isinstance(pipeline.handle(again, False), bytes)  # answered from the forwarder's cache
    upstream.cache = ForwardCache(100, 1232)  # the entry expires there
    assert isinstance(pipeline.handle(again, False), Forward)  # so the same bytes go upstream again
