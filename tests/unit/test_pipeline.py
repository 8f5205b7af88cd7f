"""The pipeline and codec, judged by dnspython (an independent DNS implementation).

Covers the hot path (cached replies patched with ID, flags and question case), EDNS0 (RFC 6891),
truncation, and malformed input (FORMERR, NOTIMP, drops).
"""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dns_server import pipeline as pipeline_module
from dns_server.config import Config
from dns_server.encode import build, encode
from dns_server.pipeline import Forward, Pipeline
from dns_server.records import Endpoint, EndpointSlice, Namespace, Port, Service
from dns_server.resolver import resolve
from dns_server.wire import decode_query
from tests.cluster_data import example_records, registry_with

Z = "cluster.local"
CONFIG = Config(listen=(("127.0.0.1", 5353),))


def make_pipeline(records: list | None = None) -> Pipeline:
    return Pipeline(CONFIG, registry_with(records if records is not None else example_records()).snapshot)


def query(name: str, qtype: str = "A", **kwargs: object) -> dns.message.Message:
    return dns.message.make_query(name, qtype, **kwargs)  # type: ignore[arg-type]


def ask(pipeline: Pipeline, message: dns.message.Message, via_tcp: bool = False) -> dns.message.Message:
    reply = pipeline.handle(message.to_wire(), via_tcp)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def test_reply_headers_and_answer() -> None:
    q = query(f"frontend.shop.svc.{Z}")
    r = ask(make_pipeline(), q)
    assert r.id == q.id
    assert r.flags & dns.flags.QR and r.flags & dns.flags.AA and r.flags & dns.flags.RD
    assert r.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in r.answer] == [f"frontend.shop.svc.{Z}. 5 IN A 10.96.10.20"]


def test_cached_reply_equals_a_freshly_resolved_one() -> None:
    """The cache cannot drift from the resolver: a hit equals a fresh pipeline's first answer."""
    warm = make_pipeline()
    for name, qtype in [(f"frontend.shop.svc.{Z}", "A"), (f"_postgres._tcp.postgres.data.svc.{Z}", "SRV"),
                        (f"nope.shop.svc.{Z}", "A"), (Z, "SOA"), (f"checkout.shop.svc.{Z}", "AAAA")]:
        for use_edns in (False, True):
            first = query(name, qtype, use_edns=0 if use_edns else False)
            warm.handle(first.to_wire(), False)
            again = query(name, qtype, use_edns=0 if use_edns else False)
            hit = warm.handle(again.to_wire(), False)
            fresh = make_pipeline().handle(again.to_wire(), False)
            assert hit == fresh


def test_question_case_is_echoed_on_hits_and_misses() -> None:
    pipeline = make_pipeline()
    for _ in range(2):  # miss, then hit
        r = ask(pipeline, query(f"FrontEnd.Shop.SVC.Cluster.Local"))
        assert r.question[0].name.to_text() == "FrontEnd.Shop.SVC.Cluster.Local."
        assert r.answer[0].name.to_text() == "FrontEnd.Shop.SVC.Cluster.Local."
        assert r.answer[0][0].to_text() == "10.96.10.20"


def test_rd_flag_follows_the_query() -> None:
    pipeline = make_pipeline()
    with_rd = query(f"frontend.shop.svc.{Z}")
    without_rd = query(f"frontend.shop.svc.{Z}")
    without_rd.flags &= ~dns.flags.RD
    assert ask(pipeline, with_rd).flags & dns.flags.RD
    assert not ask(pipeline, without_rd).flags & dns.flags.RD


def test_edns_is_echoed_with_our_payload_and_do_bit() -> None:
    pipeline = make_pipeline()
    plain = ask(pipeline, query(f"frontend.shop.svc.{Z}"))
    assert plain.edns == -1
    r = ask(pipeline, query(f"frontend.shop.svc.{Z}", use_edns=0, payload=4096, want_dnssec=True))
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    r = ask(pipeline, query(f"frontend.shop.svc.{Z}", use_edns=0, payload=4096))
    assert not r.ednsflags & dns.flags.DO


def test_edns_with_options_uses_the_slow_path_and_still_answers() -> None:
    cookie = dns.edns.GenericOption(10, b"\x01" * 8)
    r = ask(make_pipeline(), query(f"frontend.shop.svc.{Z}", use_edns=0, options=[cookie]))
    assert r.edns == 0 and r.answer[0][0].to_text() == "10.96.10.20"


def test_unknown_edns_version_is_badvers() -> None:
    r = ask(make_pipeline(), query(f"frontend.shop.svc.{Z}", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS and not r.answer


def big_headless(n: int) -> list:
    endpoints = tuple(Endpoint((f"10.1.{i // 250}.{i % 250 + 1}",), True, "", "") for i in range(n))
    return [Namespace("big"), Service("big", "many", (), True, "", (Port("http", "TCP", 80),)),
            EndpointSlice("big", "many-1", "many", endpoints, (Port("http", "TCP", 80),))]


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    pipeline = make_pipeline(big_headless(200))
    for _ in range(2):  # miss, then hit
        udp = ask(pipeline, query(f"many.big.svc.{Z}"))
        assert udp.flags & dns.flags.TC and not udp.answer
        edns = ask(pipeline, query(f"many.big.svc.{Z}", use_edns=0, payload=1232))
        assert edns.flags & dns.flags.TC and edns.edns == 0
        tcp = ask(pipeline, query(f"many.big.svc.{Z}"), via_tcp=True)
        assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 200


def test_a_reply_that_fits_the_client_buffer_is_not_truncated() -> None:
    pipeline = make_pipeline(big_headless(40))  # ~660 bytes: over 512, under 1232
    assert ask(pipeline, query(f"many.big.svc.{Z}")).flags & dns.flags.TC
    r = ask(pipeline, query(f"many.big.svc.{Z}", use_edns=0, payload=1232))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40


class MissingUpstream:
    """An Upstream whose cache never has the answer."""

    def cached(self, key: bytes, limit: int) -> bytes | None:
        return None

    def saturated(self) -> bool:
        return False

    async def forward(self, key: bytes, payload: int, via_tcp: bool, limit: int) -> bytes:
        raise AssertionError("not called by handle()")


def test_outside_names_are_refused_without_an_upstream_and_forwarded_with_one() -> None:
    q = query("example.com")
    assert ask(make_pipeline(), q).rcode() == dns.rcode.REFUSED
    pipeline = Pipeline(CONFIG, registry_with(example_records()).snapshot, upstream=MissingUpstream())
    for _ in range(2):  # the resolver's verdict, then the per-snapshot mark
        assert isinstance(pipeline.handle(q.to_wire(), False), Forward)


def test_new_snapshot_replaces_cached_answers() -> None:
    registry = registry_with(example_records())
    pipeline = Pipeline(CONFIG, registry.snapshot)
    registry.subscribe(pipeline.publish)
    assert ask(pipeline, query(f"frontend.shop.svc.{Z}")).answer
    from dns_server.registry import Remove
    registry.apply([Remove(("Service", "shop", "frontend"))])
    assert ask(pipeline, query(f"frontend.shop.svc.{Z}")).rcode() == dns.rcode.NXDOMAIN


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
    reply = make_pipeline().handle(packet, False)
    assert isinstance(reply, bytes)
    assert reply[:2] == b"\x12\x34" and reply[2] & 0x80 and reply[3] & 0x0F == dns.rcode.FORMERR


@pytest.mark.parametrize("packet", [b"", b"\x12\x34\x01", header(flags=0x8180) + QUESTION])
def test_short_packets_and_responses_are_dropped(packet: bytes) -> None:
    assert make_pipeline().handle(packet, False) is None


def test_unknown_opcode_is_notimp() -> None:
    q = query(f"frontend.shop.svc.{Z}")
    q.set_opcode(2)  # STATUS
    r = ask(make_pipeline(), q)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == 2


def test_fuzzed_packets_get_well_formed_replies_or_nothing() -> None:
    rng = random.Random(1234)
    pipeline = make_pipeline()
    seeds = [query(f"frontend.shop.svc.{Z}").to_wire(), query(f"_http._tcp.frontend.shop.svc.{Z}", "SRV",
             use_edns=0).to_wire(), query("example.com", "MX").to_wire(), header() + QUESTION]
    for i in range(5000):
        if i % 3 == 0:
            packet = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:
            packet = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                packet[rng.randrange(len(packet))] = rng.getrandbits(8)
            packet = bytes(packet[: rng.randrange(1, len(packet) + 1)] if rng.random() < 0.3 else packet)
        reply = pipeline.handle(packet, rng.random() < 0.5)
        if reply is None:
            continue
        assert isinstance(reply, bytes)
        assert reply[:2] == packet[:2] and reply[2] & 0x80
        if reply[3] & 0x0F not in (dns.rcode.FORMERR, dns.rcode.NOTIMP):
            dns.message.from_wire(reply)  # every full reply parses
    assert ask(pipeline, query(f"frontend.shop.svc.{Z}")).answer[0][0].to_text() == "10.96.10.20"


def test_unknown_opcode_without_a_question_is_still_notimp() -> None:
    reply = make_pipeline().handle(header(flags=0x1000, qd=0), False)  # STATUS, no question
    assert isinstance(reply, bytes) and reply[3] & 0x0F == dns.rcode.NOTIMP


NEGATIVE = [
    ("search-path miss", f"api.github.com.shop.svc.{Z}", "A", {}),
    ("missing service, EDNS and DO", f"nope.shop.svc.{Z}", "AAAA", dict(use_edns=0, want_dnssec=True)),
    ("NODATA for a namespace", f"shop.svc.{Z}", "A", dict(use_edns=0)),
    ("NODATA at the apex", Z, "TXT", {}),
    ("missing pod namespace", f"1-2-3-4.nope.pod.{Z}", "A", {}),
]


@pytest.mark.parametrize("what, name, qtype, options", NEGATIVE, ids=[row[0] for row in NEGATIVE])
@pytest.mark.parametrize("flags", [dns.flags.RD, dns.flags.CD, 0])
def test_negative_answers_written_directly_are_what_dnslib_writes(what: str, name: str, qtype: str,
                                                                  options: dict, flags: int) -> None:
    """encode() writes NXDOMAIN/NODATA by hand (they are most of the misses): byte for byte dnslib's message."""
    message = query(name, qtype, **options)
    message.flags = flags
    decoded = decode_query(message.to_wire())
    answer = resolve(decoded.name, decoded.qtype, decoded.qclass, registry_with(example_records()).snapshot, CONFIG)
    assert not answer.answer and len(answer.authority) == 1
    assert encode(decoded, answer, 1232) == bytes(build(decoded, answer.rcode, answer, 1232).pack())


def test_an_unknown_reverse_name_without_fallthrough_is_written_directly_too() -> None:
    config = Config(listen=CONFIG.listen, reverse_fallthrough=False)
    decoded = decode_query(query("9.9.9.10.in-addr.arpa", "PTR").to_wire())
    answer = resolve(decoded.name, decoded.qtype, decoded.qclass, registry_with(example_records()).snapshot, config)
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.authority[0].name == "in-addr.arpa"
    assert encode(decoded, answer, 1232) == bytes(build(decoded, answer.rcode, answer, 1232).pack())


def test_the_same_query_bytes_under_another_id_get_the_same_reply_with_that_id() -> None:
    """Replies kept by exact query bytes (after the ID) are the ones the question path gives."""
    pipeline = make_pipeline()
    first = query(f"FrontEnd.shop.svc.{Z}", "SRV", use_edns=0, payload=1232).to_wire()
    again = bytes((first[0] ^ 0xFF, first[1])) + first[2:]
    reply = pipeline.handle(first, False)
    repeated = pipeline.handle(again, False)
    assert isinstance(reply, bytes) and isinstance(repeated, bytes)
    assert repeated[:2] == again[:2] and repeated[2:] == reply[2:]
    assert repeated == make_pipeline().handle(again, False)  # and the same as a fresh pipeline's
    assert pipeline.handle(again, True) == repeated  # over TCP, from the question path, alike


def test_both_answer_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "MAX_CACHED_ANSWERS", 10)
    pipeline = make_pipeline()
    for i in range(25):
        assert ask(pipeline, query(f"nope{i}.shop.svc.{Z}")).rcode() == dns.rcode.NXDOMAIN
    _, by_question, by_bytes = pipeline._state
    assert 0 < len(by_question) <= 10 and 0 < len(by_bytes) <= 10


def test_additional_records_are_dropped_before_the_answer_is_truncated() -> None:
    """RFC 2181 9: a UDP reply sheds its additional section first; TC only when the answer itself does not fit."""
    pipeline = make_pipeline(big_headless(8))  # 8 SRV records fit in 512 bytes, with their addresses they do not
    for _ in range(2):  # miss, then hit
        lean = ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV"))
        assert not lean.flags & dns.flags.TC
        assert len(lean.answer[0]) == 8 and not lean.additional
        full = ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV", use_edns=0, payload=1232))
        assert len(full.answer[0]) == 8 and sum(len(rrset) for rrset in full.additional) == 8
        lean_edns = ask(pipeline, query(f"_http._tcp.many.big.svc.{Z}", "SRV", use_edns=0, payload=512))
        assert not lean_edns.flags & dns.flags.TC and lean_edns.edns == 0 and not lean_edns.additional
