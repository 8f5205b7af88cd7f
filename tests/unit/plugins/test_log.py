"""The `log` plugin's lines as CoreDNS 1.14 writes them, its class filter and rules, and the writer thread."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from dns_server.observability.logs import Output
from dns_server.plugins.log import (
    COMBINED_LOG_FORMAT,
    LogRule,
    QueryLog,
    QueryLogWriter,
    QueryRecord,
    compile_format,
    go_seconds,
    name_text,
    read_reply,
)
from tests.clock import Clock

SOA = ("example.org.", 30, "IN", "SOA", "ns.example.org. admin.example.org. 1 7200 1800 86400 30")
A = ("example.org.", 300, "IN", "A", "192.0.2.1")
NS = ("example.org.", 300, "IN", "NS", "ns.example.org.")
CNAME = ("example.org.", 300, "IN", "CNAME", "elsewhere.example.")


def make_query(name: str = "example.org", rdtype: str = "A", *, edns: bool = False, payload: int = 4096,
               do: bool = False, qid: int = 29008) -> dns.message.Message:
    if edns or do:
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=payload, want_dnssec=do)
    else:
        query = dns.message.make_query(name, rdtype, use_edns=False)
    query.id = qid
    return query


def make_reply(query: dns.message.Message, rcode: int = dns.rcode.NOERROR, answer: tuple[tuple, ...] = (),
               authority: tuple[tuple, ...] = (), flags: int = dns.flags.RA) -> bytes:
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    reply.flags |= flags
    reply.answer.extend(dns.rrset.from_text(*record) for record in answer)
    reply.authority.extend(dns.rrset.from_text(*record) for record in authority)
    return reply.to_wire()


def record(query: dns.message.Message, reply: bytes, *, remote: str = "10.244.0.92", port: int = 48081,
           local: str = "10.96.0.10", proto: str = "udp", duration: float = 0.00007631) -> QueryRecord:
    return QueryRecord(remote, port, local, proto, query.to_wire(), reply, duration)


def line(rec: QueryRecord, rule: LogRule = LogRule()) -> str | None:
    return QueryLog([rule]).line(rec)


# --- the default (common) format -------------------------------------------------------------------------------

def test_udp_ipv4_without_edns_reports_512() -> None:
    query = make_query()
    rec = record(query, make_reply(query, answer=(A,)))
    assert line(rec) == ('10.244.0.92:48081 - 29008 "A IN example.org. udp 29 false 512" '
                         'NOERROR qr,rd,ra 45 0.00007631s')


def test_udp_ipv6_with_edns_reports_its_buffer_size_and_brackets_the_address() -> None:
    query = make_query(edns=True, payload=4096)
    reply = make_reply(query, answer=(A,), flags=dns.flags.RA | dns.flags.AD)
    rec = record(query, reply, remote="::1", port=50759, duration=0.037990251)
    assert line(rec) == '[::1]:50759 - 29008 "A IN example.org. udp 40 false 4096" NOERROR qr,rd,ra,ad 56 0.037990251s'


def test_tcp_always_reports_65535() -> None:
    query = make_query(edns=True, payload=1232)
    rec = record(query, make_reply(query, answer=(A,)), remote="2001:db8::7", port=4000, proto="tcp")
    assert line(rec) == ('[2001:db8::7]:4000 - 29008 "A IN example.org. tcp 40 false 65535" '
                         'NOERROR qr,rd,ra 56 0.00007631s')


def test_do_bit_and_a_small_buffer_size_are_reported_as_sent() -> None:
    """A payload below 512 is reported as 512 (edns.Size), the DO bit as `true`."""
    query = make_query("Kube-DNS.kube-system.svc.Cluster.Local", "SRV", do=True, payload=256, qid=7)
    rec = record(query, make_reply(query, dns.rcode.NXDOMAIN, authority=(SOA,), flags=dns.flags.AA))
    assert line(rec) == ('10.244.0.92:48081 - 7 "SRV IN kube-dns.kube-system.svc.cluster.local. udp 67 true 512" '
                         'NXDOMAIN qr,aa,rd 123 0.00007631s')


def test_combined_adds_the_opcode() -> None:
    query = make_query()
    rec = record(query, make_reply(query, answer=(A,)))
    assert line(rec, LogRule(format="{combined}")) == line(rec, LogRule(format=COMBINED_LOG_FORMAT))
    assert line(rec, LogRule(format="{combined}")) == ('10.244.0.92:48081 - 29008 "A IN example.org. udp 29 false 512" '
                                                       'NOERROR qr,rd,ra 45 0.00007631s "0"')
    assert line(rec, LogRule(format="{common}")) == line(rec)


@pytest.mark.parametrize(("rcode", "text"), [
    (dns.rcode.NOERROR, "NOERROR"), (dns.rcode.FORMERR, "FORMERR"), (dns.rcode.SERVFAIL, "SERVFAIL"),
    (dns.rcode.NXDOMAIN, "NXDOMAIN"), (dns.rcode.NOTIMP, "NOTIMP"), (dns.rcode.REFUSED, "REFUSED"),
    (dns.rcode.NOTAUTH, "NOTAUTH"), (dns.rcode.BADVERS, "BADSIG"), (dns.rcode.BADCOOKIE, "BADCOOKIE"),
    (11, "DSOTYPENI"), (12, "12"),
])
def test_rcode_mnemonics_are_miekg_dns_ones(rcode: int, text: str) -> None:
    """Extended rcodes come from the OPT record; 16 is BADSIG in miekg/dns; one without a name is its number."""
    query = make_query(edns=rcode > 15)
    assert line(record(query, make_reply(query, rcode)), LogRule(format="{rcode}")) == text


def test_every_placeholder_has_coredns_value() -> None:
    """CoreDNS's replacer_test TestLabels: the request itself written as the reply."""
    query = dns.message.make_query("example.org.", "HINFO")
    query.id = 1053
    query.flags |= dns.flags.AD | dns.flags.CD
    wire = query.to_wire()
    rec = QueryRecord("10.240.0.1", 40212, "127.0.0.1", "udp", wire, wire, 0.0)
    expected = {"{type}": "HINFO", "{name}": "example.org.", "{class}": "IN", "{proto}": "udp", "{size}": "29",
                "{remote}": "10.240.0.1", "{port}": "40212", "{local}": "127.0.0.1", "{>id}": "1053",
                "{>opcode}": "0", "{>do}": "false", "{>bufsize}": "512", "{rcode}": "NOERROR", "{rsize}": "29",
                "{duration}": "0s", "{>rflags}": "rd,ad,cd"}
    assert {label: line(rec, LogRule(format=label)) for label in expected} == expected


def test_local_ipv6_is_bracketed_and_class_and_type_without_a_mnemonic_are_numbered() -> None:
    query = dns.message.make_query("example.org.", 9999, rdclass=77)
    rec = record(query, make_reply(query, dns.rcode.REFUSED), local="fd00::53")
    assert line(rec, LogRule(format="{local} {class} {type}")) == "[fd00::53] CLASS77 TYPE9999"


@pytest.mark.parametrize(("fmt", "expected"), [
    ("", ""),
    ("A", "A"),
    ("A {A}", "A {A}"),  # an unknown label stays as written (replacer.parseFormat)
    ("{test} {/test/meta4}", "{test} -"),  # metadata we do not have is `-`
    ("{{remote}}", "{10.244.0.92}"),
    ("{ A {remote} A }", "{ A 10.244.0.92 A }"),
    ("{remote}}", "10.244.0.92}"),
    ("{{remote}", "{10.244.0.92"),
    ("Foo } {remote}", "Foo } 10.244.0.92"),
    ("{ Foo", "{ Foo"),
    ("} Foo", "} Foo"),
    ("{>ID} {>id}", "{>ID} 29008"),  # header labels are case-sensitive in 1.14
    ("{when}", "{when}"),  # removed from the replacer
    ("x {combined}", "x {combined}"),  # a named format only as the whole FORMAT
    ("{proto} Request: {name} {type} {>id}", "udp Request: example.org. A 29008"),
])
def test_custom_formats_split_as_coredns_parse_format(fmt: str, expected: str) -> None:
    query = make_query()
    assert line(record(query, make_reply(query)), LogRule(format=fmt)) == expected


def test_compiled_format_joins_adjacent_literals() -> None:
    segments = compile_format("A {X} {/m} B {remote}")
    assert segments[0] == "A {X} - B " and len(segments) == 2


@pytest.mark.parametrize(("wire", "text"), [
    (b"\x00", "."),
    (b"\x07EXAMPLE\x03org\x00", "example.org."),
    (b"\x03a.b\x03c d\x00", "a\\.b.c\\ d."),
    (b"\x06@;()\"'\x01\\\x00", "\\@\\;\\(\\)\\\"\\'.\\\\."),
    (b"\x02\x01\xff\x00", "\\001\\255."),
])
def test_names_are_escaped_as_miekg_dns_prints_them(wire: bytes, text: str) -> None:
    assert name_text(wire) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0s"), (0.00007631, "0.00007631s"), (0.037990251, "0.037990251s"), (1.0, "1s"), (2.5, "2.5s"),
    (6.010923182, "6.010923182s"), (1e-9, "0.000000001s"), (100.0, "100s"),
    (1.23456789012, "1.2345678900000001s"),  # Go's Seconds() adds 1 and 0.23456789 as floats: so does CoreDNS
])
def test_duration_is_go_format_float_of_whole_nanoseconds(seconds: float, text: str) -> None:
    assert go_seconds(seconds) == text


def test_no_reply_logs_dashes_and_a_size_of_zero() -> None:
    query = make_query()
    rec = record(query, b"")
    assert line(rec, LogRule(format="{rcode} {>rflags} {rsize}")) == "- - 0"


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, make_reply(make_query()), b"\x00\x01\x01\x00\x00\x02" + bytes(6),
                                  b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"])
def test_a_query_that_cannot_be_read_gets_no_line(wire: bytes) -> None:
    """Short, a response (QR set), two questions, a compressed question name."""
    assert QueryLog([LogRule()]).line(QueryRecord("10.0.0.1", 53, "10.0.0.2", "udp", wire, b"", 0.0)) is None


# --- classes and rules -----------------------------------------------------------------------------------------

def response_kind(rdtype: str = "A", rcode: int = dns.rcode.NOERROR, answer: tuple[tuple, ...] = (),
                  authority: tuple[tuple, ...] = (), opcode: int = dns.opcode.QUERY) -> str:
    query = make_query(rdtype=rdtype)
    query.set_opcode(opcode)
    reply = read_reply(make_reply(query, rcode, answer, authority))
    assert reply is not None
    return reply.kind


@pytest.mark.parametrize(("kwargs", "kind"), [
    ({"answer": (A,)}, "success"),
    ({"answer": (CNAME,)}, "success"),  # any answer with NOERROR (PR 8232 changed the cache, not Typify)
    ({}, "success"),  # NOERROR, nothing at all
    ({"authority": (NS,)}, "success"),  # a referral
    ({"authority": (SOA,)}, "denial"),  # NODATA
    ({"rcode": dns.rcode.NXDOMAIN, "authority": (SOA,)}, "denial"),
    ({"rcode": dns.rcode.NXDOMAIN}, "error"),  # NXDOMAIN without an SOA
    ({"rcode": dns.rcode.SERVFAIL}, "error"),
    ({"rcode": dns.rcode.NOTIMP}, "error"),
    ({"rcode": dns.rcode.REFUSED}, "error"),
    ({"rcode": dns.rcode.FORMERR}, "error"),
    ({"rdtype": "AXFR", "answer": (SOA,)}, "error"),
    ({"rdtype": "IXFR", "answer": (SOA,)}, "error"),
    ({"opcode": dns.opcode.NOTIFY}, "error"),
    ({"opcode": dns.opcode.UPDATE}, "error"),
])
def test_replies_are_classified_as_coredns_response_classify(kwargs: dict, kind: str) -> None:
    assert response_kind(**kwargs) == kind


def test_a_reply_cut_short_keeps_its_header() -> None:
    reply = make_reply(make_query(), dns.rcode.NXDOMAIN, authority=(SOA,))
    cut = read_reply(reply[:40])
    assert cut is not None and (cut.rcode, cut.kind) == (dns.rcode.NXDOMAIN, "error")
    assert read_reply(reply[:11]) is None


@pytest.mark.parametrize(("classes", "logged"), [
    ({"all"}, {"ok", "nodata", "nxdomain", "servfail", "none"}),
    ({"success"}, {"ok"}),
    ({"denial"}, {"nodata", "nxdomain"}),
    ({"error"}, {"servfail", "none"}),
    ({"denial", "error"}, {"nodata", "nxdomain", "servfail", "none"}),
    ({"success", "all"}, {"ok", "nodata", "nxdomain", "servfail", "none"}),
])
def test_the_class_filter(classes: set[str], logged: set[str]) -> None:
    query = make_query()
    replies = {"ok": make_reply(query, answer=(A,)), "nodata": make_reply(query, authority=(SOA,)),
               "nxdomain": make_reply(query, dns.rcode.NXDOMAIN, authority=(SOA,)),
               "servfail": make_reply(query, dns.rcode.SERVFAIL), "none": b""}
    rule = LogRule(classes=frozenset(classes), format="{rcode}")
    assert {name for name, reply in replies.items() if line(record(query, reply), rule)} == logged


def test_the_first_rule_whose_names_cover_the_query_decides_alone() -> None:
    log = QueryLog([LogRule(names=("cluster.local", "example.org"), format="first {name}",
                            classes=frozenset({"denial"})),
                    LogRule(names=("",), format="second {name}")])
    for name, rcode, expected in [("a.example.org", dns.rcode.NXDOMAIN, "first a.example.org."),
                                  ("cluster.local", dns.rcode.NXDOMAIN, "first cluster.local."),
                                  ("example.org", dns.rcode.NOERROR, None),  # filtered, not passed on
                                  ("notexample.org", dns.rcode.NOERROR, "second notexample.org."),
                                  ("example.com", dns.rcode.NXDOMAIN, "second example.com.")]:
        query = make_query(name)
        authority = (SOA,) if rcode == dns.rcode.NXDOMAIN else ()
        assert log.line(record(query, make_reply(query, rcode, authority=authority))) == expected, name


def test_a_name_no_rule_covers_gets_no_line() -> None:
    query = make_query("example.com")
    assert QueryLog([LogRule(names=("example.org",))]).line(record(query, make_reply(query))) is None


# --- the writer ------------------------------------------------------------------------------------------------

class GatedStream(io.StringIO):
    """A stdout that can be made to hang in write(), as a full pipe does."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.flushes = 0

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def numbered(count: int) -> list[QueryRecord]:
    records = []
    for qid in range(count):
        query = make_query(qid=qid)
        records.append(record(query, make_reply(query, answer=(A,))))
    return records


LOG = QueryLog([LogRule(format="{>id} {rcode}")])


def test_close_writes_everything_queued_in_order() -> None:
    stream = GatedStream()
    writer = QueryLogWriter(Output(stream))
    for rec in numbered(1000):
        writer.submit(LOG, rec)
    writer.close()
    assert stream.getvalue().splitlines() == [f"[INFO] {qid} NOERROR" for qid in range(1000)]
    assert writer.dropped == 0


def stuck_burst(writer: QueryLogWriter, stream: GatedStream, records: list[QueryRecord]) -> None:
    """Submit while the writer hangs in write() on the first record; then let it go."""
    stream.gate.clear()
    stream.entered.clear()
    writer.submit(LOG, records[0])
    assert stream.entered.wait(10)  # the writer thread now hangs in write()
    for rec in records[1:]:  # a blocking submit would hang here, with the gate closed
        writer.submit(LOG, rec)
    stream.gate.set()


@pytest.mark.timeout(30)
def test_submit_never_waits_for_a_stuck_stdout_and_counts_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dns_server.plugins.log")
    stream, clock = GatedStream(), Clock()
    writer = QueryLogWriter(Output(stream), capacity=3, report_interval=5.0, clock=clock)
    records = numbered(10)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "dns_server.plugins.log"]

    def written(count: int) -> None:
        wait_until(lambda: len(stream.getvalue().splitlines()) == count, f"{count} lines written")

    stuck_burst(writer, stream, records)
    assert writer.dropped == 6  # 1 being written, 3 queued
    wait_until(lambda: warnings() == ["6 queries not logged: standard output is not keeping up"], "the first report")

    clock.now += 1.0
    stuck_burst(writer, stream, records)
    written(4 + 4)
    writer.submit(LOG, records[0])  # its line comes after the check that followed the burst
    written(4 + 4 + 1)
    assert len(warnings()) == 1  # within the interval: not yet

    clock.now += 5.0
    writer.submit(LOG, records[0])
    wait_until(lambda: len(warnings()) == 2, "the second report, once the interval has passed")
    stuck_burst(writer, stream, records)
    writer.close()
    assert (len(stream.getvalue().splitlines()), writer.dropped) == (4 + 4 + 1 + 1 + 4, 18)
    assert warnings() == ["6 queries not logged: standard output is not keeping up"] * 3  # the last at close


def test_lines_of_a_burst_share_one_write_and_one_flush() -> None:
    stream = GatedStream()
    stream.gate.clear()
    writer = QueryLogWriter(Output(stream))
    first, *rest = numbered(50)
    writer.submit(LOG, first)
    assert stream.entered.wait(10)
    for rec in rest:
        writer.submit(LOG, rec)
    stream.gate.set()
    writer.close()
    assert stream.flushes == 2 and len(stream.getvalue().splitlines()) == 50


def test_json_lines_carry_the_query_line_as_msg() -> None:
    stream = io.StringIO()
    writer = QueryLogWriter(Output(stream), log_format="json")
    writer.submit(LOG, numbered(1)[0])
    writer.close()
    entry = json.loads(stream.getvalue())
    assert {key: entry[key] for key in ("level", "logger", "msg")} == {
        "level": "info", "logger": "dns_server.plugins.log", "msg": "0 NOERROR"}
    assert entry["time"].endswith("Z")


def test_a_query_without_a_line_writes_nothing() -> None:
    stream = GatedStream()
    writer = QueryLogWriter(Output(stream))
    writer.submit(QueryLog([LogRule(names=("example.com",))]), numbered(1)[0])
    writer.close()
    assert stream.getvalue() == "" and stream.flushes == 0
