"""The encoder, judged by hand-checked packets and by dnspython (an independent DNS implementation).

Golden packets pin the exact bytes of a few shapes (header bits, compression pointers, OPT);
hypothesis then checks, for random answers of every shape, that dnspython reads back exactly the
`Answer` encoded, that `fit` keeps what fits and sets TC exactly when it must (RFC 2181 9,
RFC 6891 7), and that `patch_serial` changes the serial and nothing else.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.encode import (
    Encoded,
    Unencodable,
    encode,
    error_reply,
    fit,
    patch_serial,
    rotate,
)
from dns_server.protocol.wire import Query, decode_query

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV = 1, 2, 5, 6, 12, 16, 28, 33
Z = "cluster.local"
ZONE_SOA = RR(Z, SOA, 5, (f"ns.dns.{Z}", f"hostmaster.{Z}", 1767225600, 7200, 1800, 86400, 5))
ENCODED = [outcome for outcome in Outcome if outcome not in (Outcome.FORWARD, Outcome.CHASE)]


def make_query(name: str, qtype: int, *, qid: int = 0x1234, edns: bool = False, do: bool = False,
               payload: int = 1232, rd: bool = True, cd: bool = False) -> Query:
    if edns or do:
        message = dns.message.make_query(name, dns.rdatatype.RdataType(qtype), use_edns=0, payload=payload,
                                         want_dnssec=do)
    else:
        message = dns.message.make_query(name, dns.rdatatype.RdataType(qtype), use_edns=False)
    message.id = qid
    message.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return decode_query(message.to_wire())


def decoded(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire, one_rr_per_rrset=True)


# --- golden packets ------------------------------------------------------------------------------

def test_golden_a_record_points_at_the_question() -> None:
    query = make_query("Web.Shop.svc.cluster.local", A)
    wire = encode(query, Answer(Outcome.ANSWER, (RR(f"web.shop.svc.{Z}", A, 5, "10.96.10.20"),)), 1232).wire
    assert wire == bytes.fromhex(
        "1234"  # ID
        "8580"  # QR, opcode 0, AA, RD (copied), RA, rcode NOERROR
        "0001 0001 0000 0000"  # one question, one answer, no OPT (the query had none)
        "03 776562 04 73686f70 03 737663 07 636c7573746572 05 6c6f63616c 00"  # web.shop.svc.cluster.local, lower case
        "0001 0001"  # A IN
        "c00c 0001 0001 00000005 0004 0a600a14"  # owner -> the question, A IN TTL 5, 10.96.10.20
    )


def test_golden_nxdomain_soa_compresses_against_the_question_with_do_echoed() -> None:
    query = make_query(f"nope.shop.svc.{Z}", AAAA, qid=0xBEEF, do=True, rd=False, cd=True)
    encoded = encode(query, Answer(Outcome.NXDOMAIN, authority=(ZONE_SOA,)), 1232)
    assert encoded.wire == bytes.fromhex(
        "beef"
        "8493"  # QR, AA, RA, rcode NXDOMAIN (3); CD copied (0x10), RD not
        "0001 0000 0001 0001"
        "04 6e6f7065 04 73686f70 03 737663 07 636c7573746572 05 6c6f63616c 00 001c 0001"  # cluster.local at 26 (0x1a)
        "c01a 0006 0001 00000005 002a"  # owner -> cluster.local in the question, SOA IN, rdlength 42
        "02 6e73 03 646e73 c01a"  # ns.dns + pointer
        "0a 686f73746d6173746572 c01a"  # hostmaster + pointer
        "6955b900 00001c20 00000708 00015180 00000005"  # serial 1767225600, refresh, retry, expire, minimum
        "00 0029 04d0 00 00 8000 0000"  # OPT: root, UDP 1232, ext-rcode 0, version 0, DO, no options
    )
    assert encoded.serial_at == encoded.wire.index(bytes.fromhex("6955b900"))


def test_golden_srv_targets_are_written_whole_and_pointed_at() -> None:
    """RFC 2782: no compression in SRV targets; the additional owners point into them."""
    query = make_query(f"_h._tcp.db.{Z}", SRV, rd=False)
    answer = Answer(Outcome.ANSWER, (RR(f"_h._tcp.db.{Z}", SRV, 5, (0, 100, 80, f"a.db.{Z}")),),
                    additional=(RR(f"a.db.{Z}", A, 5, "10.0.0.1"),))
    wire = encode(query, answer, 1232).wire
    assert wire == bytes.fromhex(
        "1234 8480 0001 0001 0000 0001"
        "02 5f68 04 5f746370 02 6462 07 636c7573746572 05 6c6f63616c 00 0021 0001"  # db.cluster.local at 20 (0x14)
        "c00c 0021 0001 00000005 001a"  # owner -> the question (ends at 44), SRV IN, rdlength 26
        "0000 0064 0050 01 61 02 6462 07 636c7573746572 05 6c6f63616c 00"  # 0 100 80, a.db.cluster.local whole, at 55
        "c03c 0001 0001 00000005 0004 0a000001"  # owner -> the SRV target (0x3c = 60)
    )


def test_golden_badvers_puts_the_upper_rcode_bits_in_the_opt() -> None:
    query = make_query("Web.Shop.svc.cluster.local", A, edns=True)
    assert error_reply(query, dns.rcode.BADVERS, 1232) == bytes.fromhex(
        "1234 8180 0001 0000 0000 0001"  # QR, RD, RA, low rcode bits 0 (16 = 1 << 4 | 0)
        "03 576562 04 53686f70 03 737663 07 636c7573746572 05 6c6f63616c 00 0001 0001"  # the question as asked
        "00 0029 04d0 01 00 0000 0000"  # OPT with extended rcode 1
    )


def test_error_replies_copy_opcode_rd_cd_and_carry_no_aa() -> None:
    query = make_query(f"web.{Z}", A, cd=True)
    message = decoded(error_reply(query, 5, 1232))
    assert message.rcode() == 5 and message.edns == -1
    assert message.flags & (dns.flags.QR | dns.flags.RD | dns.flags.CD | dns.flags.RA | dns.flags.AA) == \
        dns.flags.QR | dns.flags.RD | dns.flags.CD | dns.flags.RA
    status = bytearray(make_query(f"web.{Z}", A).question)
    notimp = error_reply(Query(7, 2, f"web.{Z}", A, 1, bytes(status), bytes(status), False, 512, False, 0, 0x1000),
                         4, 512)
    assert notimp[2:4] == bytes((0x80 | 2 << 3, 0x80 | 4))  # QR, opcode STATUS, RA; NOTIMP
    with pytest.raises(ValueError, match="needs an OPT record"):
        error_reply(query, dns.rcode.BADVERS, 1232)


def test_an_owner_pointing_at_the_question_echoes_its_case() -> None:
    """What the pipeline does with a cached reply: copy in the question as asked."""
    query = make_query("Web.SHOP.svc.cluster.local", A)
    wire = encode(query, Answer(Outcome.ANSWER, (RR(f"web.shop.svc.{Z}", A, 5, "10.96.10.20"),)), 1232).wire
    patched = wire[:12] + query.question + wire[12 + len(query.question):]
    assert decoded(patched).answer[0].name.to_text() == "Web.SHOP.svc.cluster.local."


def test_replies_past_16k_point_only_where_a_pointer_reaches() -> None:
    """RFC 1035 4.1.4: 14 bits of offset; a name first written past them is written whole again."""
    owners = [f"host-{i}.big.{Z}" for i in range(1200)]
    answer = Answer(Outcome.ANSWER, tuple(RR(name, A, 5, "10.0.0.1") for name in owners),
                    additional=tuple(RR(name, A, 5, "10.0.0.2") for name in owners))
    wire = encode(make_query(f"big.{Z}", A), answer, 1232).wire
    assert len(wire) > 0x4000
    message = decoded(wire)
    assert [text(rr.name) for rr in message.answer] == [text(rr.name) for rr in message.additional] == owners


@pytest.mark.parametrize("size, strings", [(0, [0]), (1, [1]), (255, [255]), (256, [255, 1]), (600, [255, 255, 90])])
def test_txt_is_cut_into_character_strings_of_255_bytes(size: int, strings: list[int]) -> None:
    """RFC 1035 3.3: a character-string has one length byte; a longer text takes several (RFC 7208 3.3)."""
    record = RR(f"dns-version.{Z}", TXT, 5, "v" * size)
    message = decoded(encode(make_query(record.name, TXT), Answer(Outcome.ANSWER, (record,)), 1232).wire)
    assert [len(string) for string in message.answer[0][0].strings] == strings


# --- what cannot be encoded ----------------------------------------------------------------------

@pytest.mark.parametrize("record, message", [
    (RR("a\\.b.cluster.local", A, 5, "10.0.0.1"), "an escape"),
    (RR("a..cluster.local", A, 5, "10.0.0.1"), "an empty label"),
    (RR("x" * 64 + ".cluster.local", A, 5, "10.0.0.1"), "over 63"),
    (RR(".".join(["x" * 60] * 5), A, 5, "10.0.0.1"), "longer than 253"),
    (RR("café.cluster.local", A, 5, "10.0.0.1"), "not ASCII"),
    (RR("a.cluster.local", CNAME, 5, "b..example.com"), "an empty label"),
    (RR("a.cluster.local", SRV, 5, (0, 100, 80, "t\\.x.cluster.local")), "an escape"),
    (RR("a.cluster.local", A, 5, "10.0.0"), "not an IPv4 address"),
    (RR("a.cluster.local", A, 5, "10.0.0.256"), "not an IPv4 address"),
    (RR("a.cluster.local", A, 5, "fd00::1"), "not an IPv4 address"),
    (RR("a.cluster.local", AAAA, 5, "10.0.0.1"), "not an IPv6 address"),
    (RR("a.cluster.local", A, -1, "10.0.0.1"), "out of range"),
    (RR("a.cluster.local", A, 2**32, "10.0.0.1"), "out of range"),
    (RR("a.cluster.local", SRV, 5, (0, 100, 65536, "t.cluster.local")), "out of range"),
    (RR("a.cluster.local", 99, 5, "v=spf1"), "no encoder for record type 99"),
])
def test_unencodable_answers_raise_a_clear_error(record: RR, message: str) -> None:
    with pytest.raises(Unencodable, match=message):
        encode(make_query(f"q.{Z}", A), Answer(Outcome.ANSWER, (record,)), 1232)


@pytest.mark.parametrize("outcome", [Outcome.FORWARD, Outcome.CHASE])
def test_forward_and_chase_are_not_encoded(outcome: Outcome) -> None:
    with pytest.raises(ValueError, match="finished upstream"):
        encode(make_query("example.com", A), Answer(outcome, forward=0), 1232)


def test_patch_serial_refuses_an_offset_outside_the_reply() -> None:
    with pytest.raises(ValueError, match="no SOA serial"):
        patch_serial(b"\x00" * 20, -1, 5)


# --- properties ----------------------------------------------------------------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
LONG_LABEL = st.just("l" * 63)
ZONES = st.sampled_from([Z, f"svc.{Z}", f"shop.svc.{Z}", "in-addr.arpa", "example.com", "com"])


@st.composite
def names(draw: st.DrawFn, under: str | None = None) -> str:
    """A name under one of a few zones (so suffixes are shared), sometimes the zone itself."""
    zone = under if under is not None else draw(ZONES)
    labels = draw(st.lists(st.one_of(LABEL, LONG_LABEL), max_size=3))
    return ".".join([*labels, zone])


@st.composite
def records(draw: st.DrawFn, qname: str) -> RR:
    name = draw(st.one_of(st.just(qname), names()))
    rtype = draw(st.sampled_from([A, AAAA, CNAME, PTR, NS, SRV, TXT, SOA]))
    data: Any
    if rtype == A:
        data = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    elif rtype == AAAA:
        data = str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
    elif rtype == SRV:
        data = (draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
                draw(st.one_of(names(), st.just(qname), st.just(""))))
    elif rtype == TXT:
        data = draw(st.text(max_size=600))
    elif rtype == SOA:
        data = (draw(names()), draw(names()), *(draw(st.integers(0, 2**32 - 1)) for _ in range(5)))
    else:
        data = draw(st.one_of(names(), st.just(qname)))
    return RR(name, rtype, draw(st.integers(0, 2**31 - 1)), data)


@st.composite
def exchanges(draw: st.DrawFn, max_records: int = 6) -> tuple[Query, Answer, int]:
    """A query (random name, type, flags, EDNS) and a random answer of any encodable outcome."""
    qname = draw(names())
    edns = draw(st.booleans())
    query = make_query(draw(st.sampled_from([qname, qname.upper()])), draw(st.sampled_from([A, AAAA, SRV, PTR, SOA])),
                       qid=draw(st.integers(0, 65535)), edns=edns, do=edns and draw(st.booleans()),
                       payload=draw(st.integers(512, 4096)), rd=draw(st.booleans()), cd=draw(st.booleans()))
    section = st.lists(records(qname), max_size=max_records).map(tuple)
    answer = Answer(draw(st.sampled_from(ENCODED)), draw(section), draw(section), draw(section))
    return query, answer, draw(st.sampled_from([512, 1232, 4096]))


def as_ours(rr: Any) -> tuple[str, int, int, object]:
    """A record dnspython decoded, in the form of an `RR`'s fields."""
    rdata = rr[0]
    data: object
    if rr.rdtype in (A, AAAA):
        data = ipaddress.ip_address(rdata.address)
    elif rr.rdtype in (CNAME, PTR, NS):
        data = text(rdata.target)
    elif rr.rdtype == SRV:
        data = (rdata.priority, rdata.weight, rdata.port, text(rdata.target))
    elif rr.rdtype == TXT:
        data = b"".join(rdata.strings).decode()
    else:
        data = (text(rdata.mname), text(rdata.rname), rdata.serial, rdata.refresh, rdata.retry, rdata.expire,
                rdata.minimum)
    return text(rr.name), rr.rdtype, rr.ttl, data


def expected(rr: RR) -> tuple[str, int, int, object]:
    data = ipaddress.ip_address(cast(str, rr.data)) if rr.rtype in (A, AAAA) else rr.data
    return rr.name, rr.rtype, rr.ttl, data


def text(name: dns.name.Name) -> str:
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(exchanges())
def test_dnspython_reads_back_exactly_the_answer(exchange: tuple[Query, Answer, int]) -> None:
    query, answer, bufsize = exchange
    encoded = encode(query, answer, bufsize)
    message = decoded(encoded.wire)
    assert message.id == query.id
    assert dns.opcode.from_flags(message.flags) == query.opcode
    assert message.rcode() == answer.rcode
    assert bool(message.flags & dns.flags.AA) == answer.outcome.authoritative
    assert bool(message.flags & dns.flags.RD) == bool(query.flags & 0x0100)
    assert bool(message.flags & dns.flags.CD) == bool(query.flags & 0x0010)
    assert message.flags & (dns.flags.QR | dns.flags.RA | dns.flags.TC) == dns.flags.QR | dns.flags.RA
    assert [(text(q.name), q.rdtype) for q in message.question] == [(query.name, query.qtype)]
    for ours, theirs in ((answer.answer, message.answer), (answer.authority, message.authority),
                         (answer.additional, message.additional)):
        assert [as_ours(rr) for rr in theirs] == [expected(rr) for rr in ours]
    assert message.edns == (0 if query.edns else -1)
    if query.edns:
        assert message.payload == bufsize
        assert bool(message.ednsflags & dns.flags.DO) == query.do
    assert len(encoded.wire) <= len(message.to_wire(max_size=65535))  # compressed at least as well as dnspython does
    soas = [rr for rr in answer.answer + answer.authority + answer.additional if rr.rtype == SOA]
    if soas:
        assert encoded.wire[encoded.serial_at:encoded.serial_at + 4] == struct.pack("!I", soas[0].data[2])
    else:
        assert encoded.serial_at == -1


def record_spans(wire: bytes) -> list[tuple[int, int, int]]:
    """(section, start, end) of every record, walked with dnspython's name reader."""
    counts = struct.unpack_from("!HHHH", wire, 4)
    at = 12
    for _ in range(counts[0]):
        at += dns.name.from_wire(wire, at)[1] + 4
    spans = []
    for section, count in enumerate(counts[1:]):
        for _ in range(count):
            start = at
            at += dns.name.from_wire(wire, at)[1]
            at += 10 + struct.unpack_from("!H", wire, at + 8)[0]
            spans.append((section, start, at))
    return spans


@PROPERTIES
@given(exchanges(max_records=25), st.one_of(st.sampled_from([512, 1232, 4096]), st.integers(0, 4096)))
def test_fit_keeps_whole_records_in_order_while_they_fit(exchange: tuple[Query, Answer, int], limit: int) -> None:
    query, answer, bufsize = exchange
    wire = encode(query, answer, bufsize).wire
    cut = fit(wire, limit)
    if len(wire) <= limit:
        assert cut is wire
        return
    full, kept = decoded(wire), decoded(cut)
    spans = [span for span in record_spans(wire) if wire[span[1]:span[1] + 3] != b"\x00\x00\x29"]
    opt = 11 if query.edns else 0
    head = 12 + len(query.key)
    # whole records, in order: each section is a prefix of its own, and none follows a dropped one
    ours = [(0, as_ours(rr)) for rr in full.answer] + [(1, as_ours(rr)) for rr in full.authority] \
        + [(2, as_ours(rr)) for rr in full.additional]
    theirs = [(0, as_ours(rr)) for rr in kept.answer] + [(1, as_ours(rr)) for rr in kept.authority] \
        + [(2, as_ours(rr)) for rr in kept.additional]
    assert theirs == ours[:len(theirs)]
    # as many as fit: the first record dropped would not have fitted
    assert len(cut) <= limit or len(cut) == head + opt
    if len(theirs) < len(ours):
        _, start, end = spans[len(theirs)]
        assert len(cut) + end - start > limit
    dropped_required = len(kept.answer) + len(kept.authority) < len(full.answer) + len(full.authority)
    assert bool(kept.flags & dns.flags.TC) == dropped_required
    assert kept.flags & ~dns.flags.TC == full.flags  # every other header flag as it was
    assert (kept.edns, kept.payload) == (full.edns, full.payload)
    assert kept.id == full.id and kept.rcode() == full.rcode() and kept.question == full.question


def test_fit_sets_tc_only_when_required_records_are_dropped() -> None:
    """RFC 2181 9: dropping additional records alone does not set TC."""
    query = make_query(f"_h._tcp.db.{Z}", SRV, edns=True)
    targets = [f"host-{i}.db.{Z}" for i in range(10)]
    answer = Answer(Outcome.ANSWER, tuple(RR(query.name, SRV, 5, (0, 10, 80, t)) for t in targets),
                    additional=tuple(RR(t, A, 5, f"10.0.0.{i}") for i, t in enumerate(targets)))
    wire = encode(query, answer, 1232).wire
    lean = fit(wire, len(wire) - 1)
    assert not decoded(lean).flags & dns.flags.TC
    assert (len(decoded(lean).answer), len(decoded(lean).additional)) == (10, 9)
    short = decoded(fit(wire, 256))  # 46 bytes of header and question, 11 of OPT, 43 per SRV record
    assert short.flags & dns.flags.TC and short.edns == 0
    assert (len(short.answer), len(short.additional)) == (4, 0)


def test_fit_keeps_what_a_512_byte_client_can_take_of_40_endpoints() -> None:
    """A musl client (no EDNS, 512 bytes) gets 29 of 40 addresses rather than none."""
    query = make_query(f"many.big.svc.{Z}", A)
    answer = Answer(Outcome.ANSWER, tuple(RR(query.name, A, 5, f"10.200.0.{i}") for i in range(1, 41)))
    cut = fit(encode(query, answer, 1232).wire, 512)
    message = decoded(cut)
    assert len(message.answer) == (512 - 12 - len(query.key)) // 16 == 29
    assert message.flags & dns.flags.TC and message.edns == -1


@PROPERTIES
@given(exchanges(), st.integers(0, 2**32 - 1))
def test_patch_serial_equals_encoding_the_new_serial(exchange: tuple[Query, Answer, int], serial: int) -> None:
    query, answer, bufsize = exchange
    answer = Answer(answer.outcome, answer.answer, (ZONE_SOA, *answer.authority), answer.additional)
    encoded = encode(query, answer, bufsize)
    patched = patch_serial(encoded.wire, encoded.serial_at, serial)
    soa = [rr for rr in answer.answer + answer.authority if rr.rtype == SOA][0]
    renewed = RR(soa.name, SOA, soa.ttl, (*soa.data[:2], serial, *soa.data[3:]))

    def swap(section: tuple[RR, ...]) -> tuple[RR, ...]:
        return tuple(renewed if rr is soa else rr for rr in section)

    assert patched == encode(query, Answer(answer.outcome, swap(answer.answer), swap(answer.authority),
                                           answer.additional), bufsize).wire
    first = [rr for rr in decoded(patched).answer + decoded(patched).authority if rr.rdtype == SOA][0]
    assert first[0].serial == serial


def test_encoded_is_a_frozen_value() -> None:
    encoded = encode(make_query(f"q.{Z}", A), Answer(Outcome.NXDOMAIN, authority=(ZONE_SOA,)), 1232)
    assert isinstance(encoded, Encoded)
    with pytest.raises(AttributeError):
        encoded.serial_at = 0  # type: ignore[misc]


# -- rotate: loadbalance for replies we did not write -------------------------------------------------
def _answer_texts(wire: bytes) -> list[str]:
    return [f"{rrset.name} {rr}" for rrset in dns.message.from_wire(wire).answer for rr in rrset]


def test_rotate_turns_the_address_records_that_end_the_answer() -> None:
    """dnspython writes the CNAME whole and points the A records' owners at its target, before them."""
    message = dns.message.make_response(dns.message.make_query("www.example.com", "A", use_edns=0))
    message.answer.append(dns.rrset.from_text("www.example.com.", 60, "IN", "CNAME", "web.example.com."))
    message.answer.append(dns.rrset.from_text("web.example.com.", 60, "IN", "A", "192.0.2.1", "192.0.2.2", "192.0.2.3"))
    wire = message.to_wire()
    turned = [_answer_texts(rotate(wire, turn)) for turn in range(4)]
    assert turned[0] == turned[3] == _answer_texts(wire)
    assert turned[1][0] == turned[0][0] == "www.example.com. web.example.com."  # the CNAME stays first
    assert turned[1][1:] == turned[0][2:] + turned[0][1:2]
    assert len({tuple(t) for t in turned}) == 3 and all(sorted(t) == sorted(turned[0]) for t in turned)


def test_rotate_leaves_alone_what_it_cannot_move_safely() -> None:
    single = dns.message.make_response(dns.message.make_query("a.example.com", "A"))
    single.answer.append(dns.rrset.from_text("a.example.com.", 60, "IN", "A", "192.0.2.1"))
    wire = single.to_wire()  # once: dnspython shuffles an rdataset's records every time it writes them
    assert rotate(wire, 1) == wire  # one record
    with_authority = dns.message.make_response(dns.message.make_query("a.example.com", "A"))
    with_authority.answer.append(dns.rrset.from_text("a.example.com.", 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    with_authority.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "NS", "ns.example.com."))
    wire = with_authority.to_wire()
    assert rotate(wire, 1) == wire  # later names may point into them
    other_owner = dns.message.make_response(dns.message.make_query("a.example.com", "A"))
    other_owner.answer.append(dns.rrset.from_text("b.example.net.", 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    wire = other_owner.to_wire()  # the first A's owner is written whole; the second points into it
    assert rotate(wire, 1) == wire


def test_rotate_turns_two_records() -> None:
    message = dns.message.make_response(dns.message.make_query("a.example.com", "A"))
    message.answer.append(dns.rrset.from_text("a.example.com.", 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    wire = message.to_wire()
    assert _answer_texts(rotate(wire, 1)) == _answer_texts(wire)[::-1] and rotate(wire, 2) == wire


def test_rotate_turns_records_whose_owners_are_written_whole() -> None:
    """Not every upstream compresses: records that point nowhere can be moved freely."""
    owner = dns.name.from_text("a.example.com").to_wire()
    question = owner + struct.pack("!HH", 1, 1)
    records = [owner + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, i)) for i in (1, 2, 3)]
    wire = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 3, 0, 0) + question + b"".join(records)
    assert [rr.split()[-1] for rr in _answer_texts(rotate(wire, 1))] == ["192.0.2.2", "192.0.2.3", "192.0.2.1"]


def test_rotate_leaves_alone_a_reply_with_additional_records_besides_its_opt() -> None:
    message = dns.message.make_response(dns.message.make_query("a.example.com", "A", use_edns=0))
    message.answer.append(dns.rrset.from_text("a.example.com.", 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    message.additional.append(dns.rrset.from_text("ns.example.com.", 60, "IN", "A", "192.0.2.53"))
    wire = message.to_wire()
    assert rotate(wire, 1) == wire


def test_a_name_of_the_longest_text_is_encoded() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters: 255 bytes on the wire
    query = decode_query(dns.message.make_query("www.example.com", "CNAME").to_wire())
    answer = Answer(Outcome.ANSWER, (RR("www.example.com", 5, 5, longest),))  # written out, not a pointer
    (rrset,) = decoded(encode(query, answer, 1232).wire).answer
    assert rrset[0].target.to_text(omit_final_dot=True) == longest and len(rrset[0].target.to_wire()) == 255


# --- RDATA in wire form ----------------------------------------------------------------------------

def test_a_record_with_wire_rdata_is_written_as_it_is_and_its_soa_serial_is_never_patched() -> None:
    """The template plugin's records: dnspython's own RDATA, read back by dnspython; no serial to re-stamp."""
    mx = dns.rdata.from_text("IN", "MX", "10 mail.example.org.")
    soa = dns.rdata.from_text("IN", "SOA", "ns.example.org. h.example.org. 7 60 60 60 60")
    answer = Answer(Outcome.ANSWER, (RR("example.org", dns.rdatatype.MX, 60, cast(bytes, mx.to_wire())),),
                    (RR("example.org", SOA, 60, cast(bytes, soa.to_wire())),))
    encoded = encode(make_query("example.org.", dns.rdatatype.MX), answer, 1232)
    reply = decoded(encoded.wire)
    assert [(rrset.rdtype, rrset[0]) for rrset in reply.answer] == [(dns.rdatatype.MX, mx)]
    assert [(rrset.rdtype, rrset[0]) for rrset in reply.authority] == [(SOA, soa)]
    assert encoded.serial_at == -1
