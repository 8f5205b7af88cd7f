"""`check`'s comparison: each kind of difference from a reply, and a clean run through the real router."""

from __future__ import annotations

import asyncio
import dataclasses

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dns_server.tools.check import settle, query_wire
from dns_server.tools.compare import TCP, UDP, Reply, TtlRange, Unreadable, compare, mixed_case, read_reply
from dns_server.tools.expectations import NOERROR, NXDOMAIN, Check, expected_checks
from tests.cluster_data import example_records
from tests.doubles import pipeline_for

ZONE = "cluster.local"
NAME = "web.shop.svc.cluster.local."
SERVICE = Check("service", "2.3.1", NAME, "A", NOERROR, ("10.96.0.5",))
MISSING = Check("nxdomain", "RFC 2308 2.1", "absent.shop.svc.cluster.local.", "A", NXDOMAIN)
SOA = (("cluster.local.", 5),)


def good(check: Check, transport: str = UDP) -> Reply:
    """The reply `check` expects, with wildcards filled in."""
    answers = tuple((check.name, check.qtype, 5, data.replace("*", "10-244-0-1")) for data in check.answers)
    return Reply(transport, mixed_case(check.name), check.rcode, True, False, answers, () if answers else SOA)


def differences(check: Check, udp: Reply | None, tcp: Reply | None, ttl: TtlRange = TtlRange()) -> set[tuple[str, str, str, str]]:
    return {(d.what, d.detail, d.cites, d.transport) for d in compare(check, ZONE, ttl, udp, tcp)}


def both(check: Check, **changes: object) -> tuple[Reply, Reply]:
    return dataclasses.replace(good(check), **changes), dataclasses.replace(good(check, TCP), **changes)  # type: ignore[arg-type]


def test_the_expected_replies_have_no_difference() -> None:
    wildcard = Check("headless-srv", "2.4.2", "_pg._tcp.db.data.svc.cluster.local.", "SRV", NOERROR,
                     ("5432 db-0.db.data.svc.cluster.local.", "5432 *.db.data.svc.cluster.local."))
    for check in (SERVICE, MISSING, wildcard):
        assert differences(check, good(check), good(check, TCP)) == set()


def test_a_missing_and_an_extra_record_cite_the_checks_section() -> None:
    udp, tcp = both(SERVICE, answers=((NAME, "A", 5, "10.96.0.6"),))
    assert differences(SERVICE, udp, tcp) == {("missing record", "A 10.96.0.5", "2.3.1", "UDP+TCP"),
                                              ("extra record", "A 10.96.0.6", "2.3.1", "UDP+TCP")}


def test_a_wildcard_matches_one_label_only() -> None:
    check = Check("endpoint-ptr", "2.4.3", "2.0.244.10.in-addr.arpa.", "PTR", NOERROR, ("*.db.data.svc.cluster.local.",))
    udp, tcp = both(check, answers=((check.name, "PTR", 5, "a.b.db.data.svc.cluster.local."),))
    assert ("missing record", "PTR *.db.data.svc.cluster.local.", "2.4.3", "UDP+TCP") in differences(check, udp, tcp)


def test_a_wrong_rcode_alone_when_the_answer_is_empty() -> None:
    udp, tcp = both(SERVICE, rcode=NXDOMAIN, answers=(), authority_soa=SOA)
    assert differences(SERVICE, udp, tcp) == {("wrong rcode", "NXDOMAIN, expected NOERROR", "2.3.1", "UDP+TCP")}
    udp, tcp = both(MISSING, rcode=NOERROR)  # NXDOMAIN turned into NODATA
    assert differences(MISSING, udp, tcp) == {("wrong rcode", "NOERROR, expected NXDOMAIN", "RFC 2308 2.1", "UDP+TCP")}


def test_aa_missing_and_soa_missing() -> None:
    udp, tcp = both(MISSING, authoritative=False, authority_soa=())
    assert differences(MISSING, udp, tcp) == {
        ("AA missing", "", "RFC 1035 4.1.1", "UDP+TCP"),
        ("SOA missing", "no SOA of cluster.local. in the authority section", "RFC 2308 3", "UDP+TCP")}
    udp, tcp = both(MISSING, authority_soa=(("example.org.", 5),))  # another zone's SOA is no better
    assert {d[0] for d in differences(MISSING, udp, tcp)} == {"SOA missing"}


def test_ttls_out_of_range_and_differing_in_an_rrset() -> None:
    udp, tcp = both(SERVICE, answers=((NAME, "A", 86400, "10.96.0.5"),))
    assert differences(SERVICE, udp, tcp) == {
        ("TTL out of range", f"{NAME} A 86400, not in 0-3600", "RFC 2181 8", "UDP+TCP")}
    udp, tcp = both(MISSING, authority_soa=(("cluster.local.", 3),))
    assert differences(MISSING, udp, tcp, TtlRange(5, 30)) == {
        ("TTL out of range", "cluster.local. SOA 3, not in 5-30", "RFC 2181 8", "UDP+TCP")}
    two = Check("headless", "2.4.1", NAME, "A", NOERROR, ("10.0.0.1", "10.0.0.2"))
    udp, tcp = both(two, answers=((NAME, "A", 5, "10.0.0.1"), (NAME, "A", 6, "10.0.0.2")))
    assert differences(two, udp, tcp) == {("TTLs differ in an RRset", f"{NAME} A [5, 6]", "RFC 2181 5.2", "UDP+TCP")}


def test_dns_version_may_have_a_long_ttl() -> None:
    version = Check("dns-version", "2.2", "dns-version.cluster.local.", "TXT", NOERROR, ('"1.1.0"',))
    udp, tcp = both(version, answers=((version.name, "TXT", 28800, '"1.1.0"'),))
    assert differences(version, udp, tcp) == set()


def test_truncation_without_tc_and_a_tc_reply_left_to_tcp() -> None:
    many = Check("headless", "2.4.1", NAME, "A", NOERROR, tuple(f"10.0.0.{i}" for i in range(1, 40)))
    tcp = good(many, TCP)
    cut = dataclasses.replace(good(many), answers=good(many).answers[:29])
    assert differences(many, cut, tcp) == {("truncated without TC", "29 of 39 records", "RFC 2181 9", "UDP")}
    assert differences(many, dataclasses.replace(cut, truncated=True), tcp) == set()


def test_udp_and_tcp_answering_differently() -> None:
    udp = dataclasses.replace(good(SERVICE), rcode="SERVFAIL", answers=())
    assert differences(SERVICE, udp, good(SERVICE, TCP)) == {
        ("UDP and TCP differ", "UDP SERVFAIL 0 records, TCP NOERROR 1 records", "RFC 1035 4.2", "UDP"),
        ("wrong rcode", "SERVFAIL, expected NOERROR", "2.3.1", "UDP")}


def test_the_question_must_be_echoed_in_the_case_asked_and_a_missing_reply_is_named() -> None:
    udp, tcp = both(SERVICE, question=NAME)
    assert differences(SERVICE, udp, tcp) == {
        ("question not echoed", f"{NAME}, asked WeB.sHoP.sVc.ClUsTeR.lOcAl.", "RFC 1035 7.3, RFC 4343 4.1", "UDP+TCP")}
    assert differences(SERVICE, None, good(SERVICE, TCP)) == {("no reply", "", "RFC 1035 4.2", "UDP")}


def test_a_reply_is_read_from_the_wire_as_expectations_write_records() -> None:
    query = dns.message.make_query("_Http._tcp.Web.shop.svc.cluster.local.", "SRV")
    message = dns.message.make_response(query)
    message.flags |= dns.flags.AA
    message.set_rcode(dns.rcode.NXDOMAIN)
    for rtype, data in (("SRV", "0 100 80 Web.Shop.svc.cluster.local."), ("A", "10.0.0.1"), ("AAAA", "fd00:0::a30"),
                        ("PTR", "X.example."), ("CNAME", "Y.example."), ("TXT", '"1.1.0" "b"'), ("HINFO", "a b")):
        message.answer.append(dns.rrset.from_text(query.question[0].name, 5, "IN", rtype, data))
    message.authority.append(dns.rrset.from_text("Cluster.Local.", 30, "IN", "SOA", ". . 1 2 3 4 5"))
    reply = read_reply(message.to_wire(), TCP)  # names compressed
    owner = "_http._tcp.web.shop.svc.cluster.local."
    assert reply == Reply(TCP, "_Http._tcp.Web.shop.svc.cluster.local.", NXDOMAIN, True, False, (
        (owner, "SRV", 5, "80 web.shop.svc.cluster.local."), (owner, "A", 5, "10.0.0.1"),
        (owner, "AAAA", 5, "fd00::a30"), (owner, "PTR", 5, "x.example."), (owner, "CNAME", 5, "y.example."),
        (owner, "TXT", 5, '"1.1.0" "b"'), (owner, "HINFO", 5, "\\# 4 01610162")),
        (("cluster.local.", 30),))


def test_a_truncated_reply_may_end_anywhere() -> None:
    cut = bytes.fromhex("000087800001000100000000") + b"\x01a\x00\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01"
    assert read_reply(cut, UDP) == Reply(UDP, "a.", NOERROR, True, True, (), ())


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, bytes.fromhex("000081800001000000000000") + b"\xc0\x0c",
                                  bytes.fromhex("000081800000000100000000") + b"\x00\x00\x01\x00\x01\x00\x00"])
def test_a_reply_that_is_not_a_dns_message_is_unreadable(wire: bytes) -> None:
    with pytest.raises(Unreadable):
        read_reply(wire, UDP)


def test_our_router_passes_every_check_of_the_example_cluster() -> None:
    """The pure core through the real router (tests.doubles.pipeline_for), asked as `check` asks."""
    pipeline = pipeline_for()
    checks = expected_checks(example_records(), ZONE)
    assert {check.kind for check in checks} >= {"service", "headless", "endpoint", "nodata", "service-srv",
                                                "headless-srv", "service-ptr", "endpoint-ptr", "nxdomain"}

    def ask(check: Check, transport: str) -> Reply:
        query = dns.message.make_query(mixed_case(check.name), check.qtype, use_edns=False)
        wire = pipeline.handle(query.to_wire(), transport == TCP, ("192.0.2.7", 40000))
        assert isinstance(wire, bytes)
        return read_reply(wire, transport)

    for check in checks:
        assert compare(check, ZONE, TtlRange(), ask(check, UDP), ask(check, TCP)) == [], check


def test_the_query_check_writes_is_the_one_dnspython_writes() -> None:
    expected = dns.message.make_query("_Http._tcp.WeB.shop.svc.cluster.local.", "SRV", use_edns=False, id=4660)
    assert query_wire(4660, "_Http._tcp.WeB.shop.svc.cluster.local.", "SRV") == expected.to_wire()


def test_a_reply_is_taken_only_for_the_question_it_answers() -> None:
    """A late reply to an earlier query with the same ID must not stand for the one asked now."""
    loop = asyncio.new_event_loop()
    try:
        asked = query_wire(7, "WeB.shop.svc.cluster.local.", "A")
        pending = {7: (asked[12:].lower(), loop.create_future())}
        settle(pending, query_wire(7, "db.shop.svc.cluster.local.", "A"))
        assert not pending[7][1].done()
        echo = query_wire(7, "web.SHOP.svc.cluster.local.", "A")  # the same question in another case is the answer
        settle(pending, echo)
        assert pending[7][1].result() == echo
    finally:
        loop.close()
