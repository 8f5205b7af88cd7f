"""One listener's pipeline, socket-free: `Pipeline.handle(bytes, via_tcp)`, judged by dnspython.

Covers routing across server blocks, the answer table's three ways to answer (exact query bytes,
the question key, the slow path) giving the reply a fresh pipeline gives, ID and question case,
EDNS0 (RFC 6891), truncation of UDP replies, loadbalance, malformed input (FORMERR, NOTIMP,
drops), and the table keeping answers across snapshots but for those a change touches.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dns_server.chain.chain import Chain
from dns_server.chain.plugin import Handler, Next, Request
from dns_server.cluster.records import Service
from dns_server.cluster.snapshot import Change
from dns_server.cluster.updates import Put, Remove
from dns_server.config.model import FALLTHROUGH_ALL, NO_FALLTHROUGH, ZoneKey
from dns_server.plugins import chain_for
from dns_server.plugins.cache import CacheSettings
from dns_server.plugins.hosts import HostsEntry, HostsSettings, HostsTable
from dns_server.observability.metrics import Metrics
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.wire import decode_query, question_key
from dns_server.serving.answer_table import MAX_EXACT_PER_ENTRY, AnswerTable, Entry, View
from dns_server.serving import router
from dns_server.serving.router import EXACT_TIMED, Block, Forward, Pipeline
from tests.cluster_data import example_records, registry_with
from tests.doubles import (
    Z,
    ask,
    big_headless,
    block,
    fakes,
    pipeline_for,
    reply_of,
    server_block,
    the_block,
)

NO_FORWARD = block(forward=(), cache=None)


def query(name: str, qtype: str = "A", **options: object) -> dns.message.Message:
    return dns.message.make_query(name, qtype, **options)  # type: ignore[arg-type]


def key_of(message: dns.message.Message) -> bytes:
    return question_key(decode_query(message.to_wire()))


def with_id(wire: bytes, qid: int) -> bytes:
    return qid.to_bytes(2, "big") + wire[2:]


def same_question(reply: dns.message.Message, asked: dns.message.Message) -> bool:
    """ID and question as asked, the name's case included (dnspython compares names case-insensitively)."""
    (question,), (asked_question,) = reply.question, asked.question
    return (reply.id == asked.id and question.name.to_text() == asked_question.name.to_text()
            and (question.rdtype, question.rdclass) == (asked_question.rdtype, asked_question.rdclass))


def test_reply_headers_and_answer() -> None:
    q = query(f"frontend.shop.svc.{Z}")
    r = ask(pipeline_for(), q)
    assert r.id == q.id
    assert r.flags & dns.flags.QR and r.flags & dns.flags.AA and r.flags & dns.flags.RD
    assert r.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in r.answer] == [f"frontend.shop.svc.{Z}. 5 IN A 10.96.10.20"]


# -- the three ways to answer give the same reply --------------------------------------------------
QUESTIONS = [(f"frontend.shop.svc.{Z}", "A"), (f"_postgres._tcp.postgres.data.svc.{Z}", "SRV"),
             (f"nope.shop.svc.{Z}", "A"), (Z, "SOA"), (f"checkout.shop.svc.{Z}", "AAAA"), (f"shop.svc.{Z}", "TXT")]


@pytest.mark.parametrize("name, qtype", QUESTIONS)
@pytest.mark.parametrize("edns", [False, True])
def test_exact_hits_and_key_hits_are_the_replies_a_fresh_pipeline_gives(name: str, qtype: str, edns: bool) -> None:
    """The table cannot drift from the resolver: every way a warm pipeline answers equals a cold one's first answer."""
    options = dict(use_edns=0 if edns else False)
    warm = pipeline_for()
    first = query(name, qtype, **options).to_wire()
    assert warm.handle(first, False) == pipeline_for().handle(first, False)  # the slow path, then kept
    exact = with_id(first, 0x1111)  # the same bytes after the ID: the exact-bytes table
    assert warm.handle(exact, False) == pipeline_for().handle(exact, False)
    other_case = query(name.upper(), qtype, **options).to_wire()  # another case: only the question key matches
    assert other_case[2:] not in warm.table.exact_udp
    assert warm.handle(other_case, False) == pipeline_for().handle(other_case, False)


def test_question_case_is_echoed_by_the_slow_path_key_hits_and_exact_hits() -> None:
    pipeline = pipeline_for()
    for spelling in ("FrontEnd.Shop.SVC.Cluster.Local", "fRONTeND.sHOP.svc.cluster.LOCAL",
                     "FrontEnd.Shop.SVC.Cluster.Local"):  # a miss, a key hit in another case, an exact hit
        q = query(spelling)
        r = ask(pipeline, q)
        assert same_question(r, q)
        assert r.answer[0].name.to_text() == spelling + "."
        assert r.answer[0][0].to_text() == "10.96.10.20"


def test_rd_flag_follows_the_query() -> None:
    pipeline = pipeline_for()
    with_rd = query(f"frontend.shop.svc.{Z}")
    without_rd = query(f"frontend.shop.svc.{Z}")
    without_rd.flags &= ~dns.flags.RD
    for _ in range(2):
        assert ask(pipeline, with_rd).flags & dns.flags.RD
        assert not ask(pipeline, without_rd).flags & dns.flags.RD


def test_edns_is_echoed_with_our_payload_and_do_bit() -> None:
    pipeline = pipeline_for()
    plain = ask(pipeline, query(f"frontend.shop.svc.{Z}"))
    assert plain.edns == -1
    r = ask(pipeline, query(f"frontend.shop.svc.{Z}", use_edns=0, payload=4096, want_dnssec=True))
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    r = ask(pipeline, query(f"frontend.shop.svc.{Z}", use_edns=0, payload=4096))
    assert not r.ednsflags & dns.flags.DO


def test_the_opt_record_announces_the_blocks_bufsize() -> None:
    pipeline = pipeline_for(settings=block(bufsize=4096))
    assert ask(pipeline, query(f"frontend.shop.svc.{Z}", use_edns=0, payload=1400)).payload == 4096


def test_edns_with_options_uses_the_slow_path_and_still_answers() -> None:
    cookie = dns.edns.GenericOption(10, b"\x01" * 8)
    r = ask(pipeline_for(), query(f"frontend.shop.svc.{Z}", use_edns=0, options=[cookie]))
    assert r.edns == 0 and r.answer[0][0].to_text() == "10.96.10.20"


def test_unknown_edns_version_is_badvers() -> None:
    r = ask(pipeline_for(), query(f"frontend.shop.svc.{Z}", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS and not r.answer


NEGATIVE = [
    ("search-path miss", f"api.github.com.shop.svc.{Z}", "A", {}, dns.rcode.NXDOMAIN, Z),
    ("missing service, EDNS and DO", f"nope.shop.svc.{Z}", "AAAA", dict(use_edns=0, want_dnssec=True),
     dns.rcode.NXDOMAIN, Z),
    ("NODATA for a namespace", f"shop.svc.{Z}", "A", dict(use_edns=0), dns.rcode.NOERROR, Z),
    ("NODATA at the apex", Z, "TXT", {}, dns.rcode.NOERROR, Z),
    ("missing pod namespace", f"1-2-3-4.nope.pod.{Z}", "A", {}, dns.rcode.NXDOMAIN, Z),
    ("unknown reverse name", "9.9.9.10.in-addr.arpa", "PTR", {}, dns.rcode.NXDOMAIN, "in-addr.arpa"),
]


@pytest.mark.parametrize("what, name, qtype, options, rcode, zone", NEGATIVE, ids=[row[0] for row in NEGATIVE])
@pytest.mark.parametrize("flags", [dns.flags.RD, dns.flags.CD, 0])
def test_negative_answers(what: str, name: str, qtype: str, options: dict, rcode: int, zone: str, flags: int) -> None:
    """RFC 2308: the rcode, AA, nothing in the answer, the zone's SOA in authority; RD and CD as asked."""
    message = query(name, qtype, **options)
    message.flags = flags
    pipeline = pipeline_for(settings=block(fallthrough=NO_FALLTHROUGH))
    for _ in range(2):  # the slow path, then the table
        r = ask(pipeline, message)
        assert r.rcode() == rcode and r.flags & dns.flags.AA and not r.answer
        assert r.flags & (dns.flags.RD | dns.flags.CD) == flags
        (soa,) = r.authority
        assert (soa.name.to_text(), soa.rdtype, soa.ttl) == (zone + ".", dns.rdatatype.SOA, 5)
        assert (soa[0].mname.to_text(), soa[0].rname.to_text()) == (f"ns.dns.{zone}.", f"hostmaster.{zone}.")
        assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum) == (7200, 1800, 86400, 5)
        assert r.edns == (0 if options.get("use_edns") == 0 else -1)
        assert bool(r.ednsflags & dns.flags.DO) == bool(options.get("want_dnssec"))


# -- routing across server blocks ----------------------------------------------------------------------
def routed_pipeline() -> Pipeline:
    """Three blocks on one listener: cluster.local (kubernetes), shop.svc.cluster.local (kubernetes, TTL 60),
    corp.example (hosts only)."""
    view = View(registry_with(example_records()).snapshot)
    cluster = block(keys=(ZoneKey(Z, 5353),), forward=(), cache=None)
    shop = block(keys=(ZoneKey(f"shop.svc.{Z}", 5353),), forward=(), cache=None, ttl=60)
    corp = server_block(keys=(ZoneKey("corp.example", 5353),), hosts=HostsSettings(path=None))
    table = HostsTable.build([HostsEntry("10.1.1.1", ("db.corp.example",))], zones=("corp.example",))
    corp_chain = chain_for(corp)
    corp_chain.handler("hosts").table = table  # type: ignore[union-attr]
    blocks = [Block(cluster, view, chain_for(cluster)), Block(shop, view, chain_for(shop)), Block(corp, view, corp_chain)]
    return Pipeline([(zone, b) for b in blocks for zone in b.settings.zones])


@pytest.mark.parametrize("name, rcode, answer", [
    (f"kubernetes.default.svc.{Z}", dns.rcode.NOERROR, f"kubernetes.default.svc.{Z}. 5 IN A 10.96.0.1"),
    (f"frontend.shop.svc.{Z}", dns.rcode.NOERROR, f"frontend.shop.svc.{Z}. 60 IN A 10.96.10.20"),  # the longer zone
    ("db.corp.example", dns.rcode.NOERROR, "db.corp.example. 3600 IN A 10.1.1.1"),
    ("www.example.org", dns.rcode.REFUSED, None),  # no block serves it
    ("1.0.96.10.in-addr.arpa", dns.rcode.REFUSED, None),  # nor this: no block has a reverse zone as a key
])
def test_the_block_with_the_longest_zone_answers_and_a_name_none_covers_is_refused(name: str, rcode: int,
                                                                                    answer: str | None) -> None:
    pipeline = routed_pipeline()
    for _ in range(2):
        q = query(name)
        r = ask(pipeline, q)
        assert same_question(r, q) and r.rcode() == rcode
        assert [rrset.to_text() for rrset in r.answer] == ([answer] if answer else [])


def test_a_class_other_than_in_is_refused_by_a_listener_without_chaos_or_forward() -> None:
    pipeline = pipeline_for(settings=NO_FORWARD)
    q = query(f"frontend.shop.svc.{Z}", "A", rdclass=dns.rdataclass.CH)
    for _ in range(2):
        r = ask(pipeline, q)
        assert r.rcode() == dns.rcode.REFUSED and same_question(r, q) and not r.answer


def test_with_forward_a_class_other_than_in_reaches_the_plugins() -> None:
    """As CoreDNS: forward opens the listener to every class, and kubernetes answers without looking at
    the class, with its records in class IN."""
    q = query(f"frontend.shop.svc.{Z}", "A", rdclass=dns.rdataclass.CH)
    r = ask(pipeline_for(), q)
    assert r.rcode() == dns.rcode.NOERROR and same_question(r, q)
    assert [(rrset.rdclass, rrset.rdtype) for rrset in r.answer] == [(dns.rdataclass.IN, dns.rdatatype.A)]


def test_a_name_no_plugin_takes_is_servfail() -> None:
    """CoreDNS's "no next plugin found": a block without forward gets names outside its kubernetes zones."""
    r = ask(pipeline_for(settings=NO_FORWARD), query("example.com"))
    assert r.rcode() == dns.rcode.SERVFAIL and not r.flags & dns.flags.AA


def test_outside_names_are_forwarded() -> None:
    pipeline = pipeline_for(settings=block(cache=None))
    for _ in range(2):  # the resolver's verdict, then the table's forward entry
        assert isinstance(pipeline.handle(query("example.com").to_wire(), False), Forward)


# -- truncation -----------------------------------------------------------------------------------------
def fits(reply_wire: bytes, asked: dns.message.Message, limit: int, full: int) -> dns.message.Message:
    """The properties every UDP reply keeps: its query's ID and question, at most `limit` bytes,
    TC exactly when answer records were left out (whole records only: dnspython parses it)."""
    reply = dns.message.from_wire(reply_wire)
    assert same_question(reply, asked)
    assert len(reply_wire) <= limit
    kept = sum(len(rrset) for rrset in reply.answer)
    assert bool(reply.flags & dns.flags.TC) == (kept < full)
    return reply


@pytest.mark.parametrize("count", [8, 40, 200])
@pytest.mark.parametrize("qtype", ["A", "SRV"])
@pytest.mark.parametrize("payload", [None, 512, 700, 1232, 4096])
def test_udp_replies_fit_the_clients_limit_by_every_path(count: int, qtype: str, payload: int | None) -> None:
    name = f"many.big.svc.{Z}" if qtype == "A" else f"_http._tcp.many.big.svc.{Z}"
    limit = 512 if payload is None else min(payload, 1232)  # never more than our bufsize
    options = dict(use_edns=False) if payload is None else dict(use_edns=0, payload=payload)
    pipeline = pipeline_for(big_headless(count))
    full = len(ask(pipeline, query(name, qtype), via_tcp=True).answer[0])
    assert full == count
    rng = random.Random(count)
    for spelling in (name, name, name.upper(), name.upper()):  # a miss or a key hit, then an exact hit, twice
        q = query(spelling, qtype, **options)
        q.id = rng.randrange(65536)
        fits(reply_of(pipeline, q.to_wire()), q, limit, full)
    slow = query(name.title(), qtype, **options)  # an extra additional record: only the slow path reads it
    slow.additional.append(dns.rrset.from_text("extra.", 0, "IN", "TXT", '"x"'))
    for qid in (1, 2):
        slow.id = qid
        fits(reply_of(pipeline, slow.to_wire()), slow, limit, full)


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    pipeline = pipeline_for(big_headless(200))
    for _ in range(2):  # miss, then hit
        udp = ask(pipeline, query(f"many.big.svc.{Z}"))
        assert udp.flags & dns.flags.TC
        edns = ask(pipeline, query(f"many.big.svc.{Z}", use_edns=0, payload=1232))
        assert edns.flags & dns.flags.TC and edns.edns == 0  # the OPT record survives the cut (RFC 6891 7)
        tcp = ask(pipeline, query(f"many.big.svc.{Z}"), via_tcp=True)
        assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 200


def test_a_reply_that_fits_the_client_buffer_is_not_truncated() -> None:
    pipeline = pipeline_for(big_headless(40))  # ~660 bytes: over 512, under 1232
    assert ask(pipeline, query(f"many.big.svc.{Z}")).flags & dns.flags.TC
    r = ask(pipeline, query(f"many.big.svc.{Z}", use_edns=0, payload=1232))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40


def test_additional_records_are_dropped_before_the_answer_is_truncated() -> None:
    """RFC 2181 9: a UDP reply sheds additional records first; TC only when the answer itself does not fit."""
    pipeline = pipeline_for(big_headless(8))  # 8 SRV records fit in 512 bytes, with their addresses they do not
    full_additional = {rr.to_text() for rrset in
                       ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV"), via_tcp=True).additional
                       for rr in rrset}
    assert len(full_additional) == 8
    for _ in range(2):  # miss, then hit
        for options in ({}, dict(use_edns=0, payload=512)):
            lean = ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV", **options))
            assert not lean.flags & dns.flags.TC and len(lean.answer[0]) == 8
            kept = {rr.to_text() for rrset in lean.additional for rr in rrset}
            assert kept < full_additional
        full = ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV", use_edns=0, payload=1232))
        assert {rr.to_text() for rrset in full.additional for rr in rrset} == full_additional


# -- loadbalance -----------------------------------------------------------------------------------------
def test_loadbalance_rotates_the_address_records_and_keeps_the_set() -> None:
    pipeline = pipeline_for(big_headless(4), settings=block(loadbalance=True))
    plain = pipeline_for(big_headless(4))
    expected = sorted(rr.to_text() for rr in ask(plain, query(f"many.big.svc.{Z}")).answer[0])
    orders = []
    for via_tcp in (False, True, False, False, True, False, False, False):
        q = query(f"many.big.svc.{Z}")
        r = ask(pipeline, q, via_tcp=via_tcp)
        assert same_question(r, q)
        records = [rr.to_text() for rr in r.answer[0]]
        assert sorted(records) == expected
        orders.append(tuple(records))
    assert len(set(orders)) == 4  # every rotation of the four, each query the next
    udp = [order for order, via_tcp in zip(orders, (False, True, False, False, True, False, False, False))
           if not via_tcp]
    assert udp[:4] == [udp[0][i:] + udp[0][:i] for i in range(4)] and udp[4:] == udp[:2]
    assert q.to_wire()[2:] in pipeline.table.exact_udp  # the next one by a dict lookup, turned
    first = [rr.to_text() for rr in ask(plain, query(f"many.big.svc.{Z}")).answer[0]]
    assert [ask(plain, query(f"many.big.svc.{Z}")).answer[0][0].to_text() for _ in range(3)] == [first[0]] * 3


def test_a_loadbalanced_answer_past_its_exact_patterns_is_not_turned_into_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0x20 client changes the name's case in every query: past MAX_EXACT_PER_ENTRY patterns the
    key path serves it, without building every rotation for a pattern that will not be kept."""
    pipeline = pipeline_for(big_headless(4), settings=block(loadbalance=True))
    built: list[int] = []
    turns = Entry.turns
    monkeypatch.setattr(Entry, "turns", lambda entry, limit: built.append(limit) or turns(entry, limit))
    names = ["".join(c.upper() if (bits >> i) & 1 else c for i, c in enumerate("many")) for bits in range(10)]
    for name in names:
        assert len(ask(pipeline, query(f"{name}.big.svc.{Z}")).answer[0]) == 4
    assert len(built) == MAX_EXACT_PER_ENTRY and len(pipeline.table.exact_udp) == MAX_EXACT_PER_ENTRY


# -- the answer table across snapshots ---------------------------------------------------------------
def test_a_change_drops_only_the_answers_it_touches() -> None:
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry)
    touched, kept, negative = query(f"frontend.shop.svc.{Z}"), query(f"cart.shop.svc.{Z}"), query(f"new.shop.svc.{Z}")
    for q in (touched, kept, negative):
        ask(pipeline, q)
    entries = pipeline.table.entries
    kept_entry = entries[key_of(kept)]
    assert key_of(touched) in entries and key_of(negative) in entries
    registry.apply([Remove(("Service", "shop", "frontend")),
                    Put(Service("shop", "new", ("10.96.10.99",), False, "", ()))], now=1_700_000_000)
    assert entries.get(key_of(kept)) is kept_entry  # the same entry, kept
    assert key_of(touched) not in entries and key_of(negative) not in entries
    assert pipeline.table.counters.invalidations == 2
    assert ask(pipeline, touched).rcode() == dns.rcode.NXDOMAIN
    assert ask(pipeline, negative).answer[0][0].to_text() == "10.96.10.99"
    assert ask(pipeline, kept).answer[0][0].to_text() == "10.96.10.21"


def test_a_removed_service_is_nxdomain_after_the_change_even_from_exact_bytes() -> None:
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry)
    q = query(f"frontend.shop.svc.{Z}")
    assert ask(pipeline, q).answer and ask(pipeline, q).answer  # the second from the exact-bytes table
    registry.apply([Remove(("Service", "shop", "frontend"))])
    assert ask(pipeline, q).rcode() == dns.rcode.NXDOMAIN


def test_the_soa_serial_of_a_kept_negative_answer_follows_the_snapshot() -> None:
    """Whole seconds: equal within a second, greater after (CoreDNS); cached negative answers are restamped."""
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry)
    q = query(f"nope.shop.svc.{Z}")

    def serial() -> int:
        return int(ask(pipeline, q).authority[0][0].serial)

    first = serial()
    assert first == 1_700_000_000 and serial() == first
    registry.apply([Put(Service("shop", "other", ("10.96.10.98",), False, "", ()))], now=1_700_000_000.9)
    assert serial() == first  # the same second
    registry.apply([Put(Service("shop", "third", ("10.96.10.97",), False, "", ()))], now=1_700_000_042.5)
    assert serial() == 1_700_000_042
    fresh = pipeline_for(registry=registry)
    again = query(f"nope.shop.svc.{Z}")
    assert reply_of(pipeline, again.to_wire()) == reply_of(fresh, again.to_wire())


def test_on_an_event_loop_a_new_serial_reaches_the_kept_replies_a_slice_per_turn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A serial change does not stop the loop while every kept negative reply is restamped: a slice
    per turn (one entry here), queries answered in between; after a few turns every one is current."""
    monkeypatch.setattr(router, "RESTAMP_SLICE", 1)
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry)
    questions = [query(f"{name}.shop.svc.{Z}") for name in ("nope", "nada", "nix")]

    def serials() -> list[int]:
        return [int(ask(pipeline, q).authority[0][0].serial) for q in questions]

    async def main() -> None:
        assert serials() == serials() == [1_700_000_000] * 3  # the second round: exact replies
        registry.apply([Put(Service("shop", "other", ("10.96.10.98",), False, "", ()))], now=1_700_000_042.5)
        assert sorted(serials()) == [1_700_000_000, 1_700_000_000, 1_700_000_042]  # one done in publish
        for _ in range(3):
            await asyncio.sleep(0)
        assert serials() == [1_700_000_042] * 3

    asyncio.run(main())


def test_answers_are_bounded() -> None:
    table = AnswerTable(max_entries=10, max_exact=10)
    pipeline = pipeline_for(table=table)
    for i in range(25):
        assert ask(pipeline, query(f"nope{i}.shop.svc.{Z}")).rcode() == dns.rcode.NXDOMAIN
    assert 0 < len(table) <= 10 and 0 < len(table.exact_udp) <= 10
    assert ask(pipeline, query(f"nope24.shop.svc.{Z}")).rcode() == dns.rcode.NXDOMAIN


# -- forwarded questions ------------------------------------------------------------------------------
def test_forwarded_questions_are_answered_from_the_outbound_cache_without_a_task() -> None:
    pipeline = pipeline_for(settings=block(cache=CacheSettings()))
    first = query("WWW.example.COM")
    assert isinstance(pipeline.handle(first.to_wire(), False), Forward)  # a miss: the transport makes a task
    assert ask(pipeline, first).answer[0][0].to_text() == "192.0.2.10"
    second = query("www.Example.com")
    hit = pipeline.handle(second.to_wire(), False)
    assert isinstance(hit, bytes)  # a hit: answered at once
    assert same_question(dns.message.from_wire(hit), second)
    assert fakes(pipeline)[0].asked == ["www.example.com."]


def test_refused_at_once_when_the_forwarder_is_saturated() -> None:
    pipeline = pipeline_for()
    forwarder = fakes(pipeline)[0]
    forwarder.full = True
    reply = pipeline.handle(query("www.example.com").to_wire(), False)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED
    assert forwarder.metrics.rejections == 1 and forwarder.asked == []


# -- malformed input ------------------------------------------------------------------------------------
def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x08frontend\x04shop\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"


@pytest.mark.parametrize("packet", [
    header(qd=0),
    header(qd=2) + QUESTION + QUESTION,
    header() + b"\x08frontend\x04sh",  # name runs off the end
    header() + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer (a loop to itself) in the question
    header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # a 257-byte name
    header(ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x10",  # OPT rdata runs off the end
    header(ar=2) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2,  # two OPT records
])
def test_malformed_queries_get_formerr(packet: bytes) -> None:
    reply = pipeline_for().handle(packet, False)
    assert isinstance(reply, bytes)
    assert reply[:2] == b"\x12\x34" and reply[2] & 0x80 and reply[3] & 0x0F == dns.rcode.FORMERR


@pytest.mark.parametrize("packet", [b"", b"\x12\x34\x01", header(flags=0x8180) + QUESTION])
def test_short_packets_and_responses_are_dropped(packet: bytes) -> None:
    assert pipeline_for().handle(packet, False) is None


def test_unknown_opcode_is_notimp() -> None:
    q = query(f"frontend.shop.svc.{Z}")
    q.set_opcode(2)  # STATUS
    r = ask(pipeline_for(), q)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == 2


def test_unknown_opcode_without_a_question_is_still_notimp() -> None:
    reply = pipeline_for().handle(header(flags=0x1000, qd=0), False)  # STATUS, no question
    assert isinstance(reply, bytes) and reply[3] & 0x0F == dns.rcode.NOTIMP


def test_fuzzed_packets_get_well_formed_replies_or_nothing() -> None:
    rng = random.Random(1234)
    pipeline = pipeline_for(settings=block(cache=None))
    seeds = [query(f"frontend.shop.svc.{Z}").to_wire(), query(f"_http._tcp.frontend.shop.svc.{Z}", "SRV",
             use_edns=0).to_wire(), query(f"nope.shop.svc.{Z}", "MX").to_wire(), header() + QUESTION]
    for i in range(5000):
        if i % 3 == 0:
            packet = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:
            mutated = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            packet = bytes(mutated[: rng.randrange(1, len(mutated) + 1)] if rng.random() < 0.3 else mutated)
        reply = pipeline.handle(packet, rng.random() < 0.5)
        if reply is None or isinstance(reply, Forward):
            continue
        assert reply[:2] == packet[:2] and reply[2] & 0x80
        if reply[3] & 0x0F not in (dns.rcode.FORMERR, dns.rcode.NOTIMP):
            dns.message.from_wire(reply)  # every full reply parses
    assert ask(pipeline, query(f"frontend.shop.svc.{Z}")).answer[0][0].to_text() == "10.96.10.20"


def test_the_same_query_bytes_under_another_id_get_the_same_reply_with_that_id() -> None:
    """Replies kept by exact query bytes (after the ID) are the ones the question path gives."""
    pipeline = pipeline_for()
    first = query(f"FrontEnd.shop.svc.{Z}", "SRV", use_edns=0, payload=1232).to_wire()
    again = with_id(first, int.from_bytes(first[:2], "big") ^ 0xFF00)
    reply = pipeline.handle(first, False)
    repeated = pipeline.handle(again, False)
    assert isinstance(reply, bytes) and isinstance(repeated, bytes)
    assert repeated[:2] == again[:2] and repeated[2:] == reply[2:]
    assert repeated == pipeline_for().handle(again, False)  # and the same as a fresh pipeline's
    assert pipeline.handle(again, True) == repeated  # over TCP, from the question path, alike


def test_a_reloaded_hosts_table_replaces_what_the_plugins_after_it_answered() -> None:
    """As runtime.hosts_changed does: the hosts plugin gets the new table and the pipeline hears Change(hosts=True)."""
    settings = block(hosts=HostsSettings(path=None, fallthrough=FALLTHROUGH_ALL))
    pipeline = pipeline_for(settings=settings, hosts=HostsTable.build([]))
    q = query(f"frontend.shop.svc.{Z}")
    assert ask(pipeline, q).answer[0][0].to_text() == "10.96.10.20"  # from kubernetes: hosts passed it on
    served = the_block(pipeline)
    served.chain.handler("hosts").table = HostsTable.build(  # type: ignore[union-attr]
        [HostsEntry("10.1.1.1", (f"frontend.shop.svc.{Z}",))])
    pipeline.publish(served.view, Change(hosts=True), False)
    assert ask(pipeline, q).answer[0][0].to_text() == "10.1.1.1"


MODES = [dict(rd=rd, cd=cd, edns=edns) for rd in (False, True) for cd in (False, True) for edns in (None, "plain", "do")]


def mode_query(rd: bool, cd: bool, edns: str | None, extra: bool = False) -> dns.message.Message:
    q = query(f"frontend.shop.svc.{Z}", use_edns=0 if edns else False, want_dnssec=edns == "do")
    q.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    if extra:  # a record in the additional section that is not an OPT: only the slow path reads such a query
        q.additional.append(dns.rrset.from_text("x.example.", 60, "IN", "TXT", '"x"'))
    return q


@pytest.mark.parametrize("mode", MODES, ids=[f"rd={m['rd']},cd={m['cd']},edns={m['edns']}" for m in MODES])
def test_the_slow_path_keeps_each_answer_under_the_key_the_fast_path_reads(mode: dict[str, Any]) -> None:
    """An answer resolved on the slow path is found by the fast path for the same mode, and by no other mode."""
    pipeline = pipeline_for()
    slow = mode_query(**mode, extra=True)
    ask(pipeline, slow)
    assert len(pipeline.table) == 1 and pipeline.table.counters.hits == 0
    for other in MODES:
        asked = mode_query(**other)
        r = ask(pipeline, asked)
        assert bool(r.flags & dns.flags.CD) == other["cd"] and (r.edns >= 0) == bool(other["edns"])
        assert bool(r.ednsflags & dns.flags.DO) == (other["edns"] == "do")
    assert pipeline.table.counters.hits == 1  # only the same mode found it; every other mode resolved afresh
    assert len(pipeline.table) == len(MODES)


class ForwardsForTheClient(Handler):
    """Reads who asked, then sends the question upstream: an answer only this client may have."""

    def serve(self, request: Request, next: Next) -> Answer:
        request.client()
        return request.reads.answer(Outcome.FORWARD, forward=0)


def test_a_forwarded_question_that_read_the_client_is_not_kept_for_others() -> None:
    pipeline = pipeline_for()
    the_block(pipeline).chain = Chain([("forward", ForwardsForTheClient())])
    wire = dns.message.make_query("example.com", "A").to_wire()
    assert isinstance(pipeline.handle(wire, False, ("192.0.2.1", 1000)), Forward)
    assert not pipeline.table.entries


class Fails(Handler):
    """A plugin's error: SERVFAIL with the reason the `errors` plugin logs."""

    def serve(self, request: Request, next: Next) -> Answer:
        return request.reads.answer(Outcome.SERVFAIL, reason="it broke")


def test_a_servfail_the_errors_plugin_logs_is_logged_for_every_query_never_kept() -> None:
    """As CoreDNS without `cache`: the same query bytes again are not answered from the exact replies."""
    pipeline = pipeline_for()
    logged: list[tuple[int, str, int, str]] = []
    the_block(pipeline).chain = Chain([("template", Fails())])
    the_block(pipeline).errors = lambda *report: logged.append(report)
    wire = dns.message.make_query("example.com", "A").to_wire()
    for _ in range(3):
        reply = pipeline.handle(wire, False, ("192.0.2.1", 1000))
        assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
    assert logged == [(dns.rcode.SERVFAIL, "example.com", dns.rdatatype.A, "it broke")] * 3
    assert not pipeline.table.entries and not pipeline.table.exact_udp


def test_a_metered_listener_counts_exact_replies_as_answer_cache_hits() -> None:
    """dns_server_answer_cache_hits_total: the second question is found by its key, the third by its bytes."""
    pipeline = pipeline_for(metrics=Metrics().queries)
    asked = query(f"frontend.shop.svc.{Z}")
    for _ in range(3):
        assert ask(pipeline, asked).rcode() == dns.rcode.NOERROR
    assert (pipeline.table.counters.misses, pipeline.table.counters.hits) == (1, 2)


def test_a_metered_listener_times_one_exact_reply_in_64_and_adds_its_duration_for_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clock reads cost more than the look-up they would time: every exact reply is counted, one in
    EXACT_TIMED timed, and the others add that one's duration to the histogram's sum."""
    ticks = itertools.count()
    reads: list[float] = []
    monkeypatch.setattr(router, "perf_counter", lambda: reads.append(next(ticks) * 1e-6) or reads[-1])
    metrics = Metrics()
    pipeline = pipeline_for(metrics=metrics.queries)
    asked = query(f"frontend.shop.svc.{Z}")
    for _ in range(2 + 4 * EXACT_TIMED):  # the chain's answer, the key's, then exact replies
        assert ask(pipeline, asked).rcode() == dns.rcode.NOERROR
    found = metric_sums(metrics)
    assert found["coredns_dns_request_duration_seconds_count"] == 2 + 4 * EXACT_TIMED
    assert found["coredns_dns_request_duration_seconds_sum"] == pytest.approx((2 + 4 * EXACT_TIMED) * 1e-6)
    assert len(reads) <= 2 * (2 + 5)


def test_a_metered_listener_counts_every_exact_reply_as_a_request() -> None:
    """coredns_dns_requests_total and the duration histogram's count: the first question is answered by
    the chain, the second by its key, the last two by their bytes (counted where they are found)."""
    metrics = Metrics()
    pipeline = pipeline_for(metrics=metrics.queries)
    asked = query(f"frontend.shop.svc.{Z}")
    for _ in range(4):
        assert ask(pipeline, asked).rcode() == dns.rcode.NOERROR
    found = metric_sums(metrics)
    assert found["coredns_dns_requests_total"] == found["coredns_dns_request_duration_seconds_count"] == 4


def metric_sums(metrics: Metrics) -> dict[str, float]:
    """Each sample name's values added up, from /metrics' exposition."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0) + sample.value
    return found
