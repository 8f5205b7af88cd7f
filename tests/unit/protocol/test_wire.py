"""wire.py: queries decoded from golden packets, every malformation that is FORMERR or dropped, and
the small byte-level builders; a property test checks every query dnspython builds decodes the same.

Golden packets are written out byte by byte (RFC 1035 4.1, RFC 6891 6.1.2), so the decoder is not
judged by the library that built its input; dnspython builds the property test's queries.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dns_server.protocol.wire import (
    MODE_CD,
    MODE_DO,
    MODE_EDNS,
    MODE_NSID,
    MODE_RD,
    Drop,
    FormErr,
    Query,
    decode_query,
    header_only_reply,
    name_to_wire,
    plain_query,
    query_for_key,
    question_key,
    read_plain,
    reply_matches,
)

WWW = b"\x03www\x07Example\x03com\x00"  # www.Example.com, as asked
A_IN = b"\x00\x01\x00\x01"


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def opt(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"", owner: bytes = b"\x00") -> bytes:
    """An OPT pseudo-record (RFC 6891 6.1.2): root owner, type 41, class = UDP payload size."""
    return owner + struct.pack("!HHBBHH", 41, payload, 0, version, 0x8000 if do else 0, len(options)) + options


def record(owner: bytes, rtype: int, rdata: bytes, ttl: int = 300) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def query(name: str = "www.example.com", qid: int = 0x1234, flags: int = 0x0100, question: bytes = WWW + A_IN,
          edns: bool = False, payload: int = 512, do: bool = False, edns_version: int = 0, options: bytes = b"") -> Query:
    """The Query decode_query should give; `question` is the question section as sent."""
    key = question[:-4].lower() + question[-4:]
    qtype, qclass = struct.unpack("!HH", question[-4:])
    return Query(qid, (flags >> 11) & 0xF, name, qtype, qclass, question, key, edns, payload, do, edns_version, flags,
                 options)


GOLDEN = [
    ("a plain query, RD", header() + WWW + A_IN, query()),
    ("no flags", header(flags=0) + WWW + A_IN, query(flags=0)),
    ("CD", header(flags=0x0110) + WWW + A_IN, query(flags=0x0110)),
    ("opcode NOTIFY", header(flags=0x2000) + WWW + A_IN, query(flags=0x2000)),
    ("EDNS, 4096 bytes, DO", header(ar=1) + WWW + A_IN + opt(4096, do=True),
     query(edns=True, payload=4096, do=True)),
    ("EDNS, a buffer under 512 counts as 512", header(ar=1) + WWW + A_IN + opt(100), query(edns=True, payload=512)),
    ("EDNS version 1 (answered BADVERS)", header(ar=1) + WWW + A_IN + opt(1232, version=1),
     query(edns=True, payload=1232, edns_version=1)),
    ("EDNS with an option (a cookie)", header(ar=1) + WWW + A_IN + opt(1232, options=b"\x00\x0a\x00\x08" + bytes(8)),
     query(edns=True, payload=1232, options=b"\x00\x0a\x00\x08" + bytes(8))),
    ("another additional record before the OPT", header(ar=2) + WWW + A_IN
     + record(b"\xc0\x0c", 1, bytes(4)) + opt(1232), query(edns=True, payload=1232)),
    ("an answer record is skipped", header(an=1, ar=1) + WWW + A_IN + record(b"\xc0\x0c", 1, bytes(4)) + opt(1232),
     query(edns=True, payload=1232)),
    ("an authority record is skipped", header(ns=1) + WWW + A_IN + record(b"\x00", 6, bytes(22)), query()),
    ("answer and authority records are skipped", header(an=1, ns=1, ar=1) + WWW + A_IN
     + record(b"\xc0\x0c", 1, bytes(4)) + record(b"\x00", 6, bytes(22)) + opt(1232), query(edns=True, payload=1232)),
    ("a record with no data, at the very end", header(an=1) + WWW + A_IN + record(b"\xc0\x0c", 1, b""), query()),
    ("a compression pointer past offset 255", header(an=1) + WWW + A_IN + record(b"\xc1\x0c", 1, bytes(4)), query()),
    ("a record owner with a 63-byte label", header(ar=2) + WWW + A_IN + record(b"\x3f" + b"a" * 63 + b"\x00", 16, b"")
     + opt(1232), query(edns=True, payload=1232)),
    ("EDNS with a flag other than DO", header(ar=1) + WWW + A_IN + opt(1232)[:7] + b"\x00\x01" + opt(1232)[9:],
     query(edns=True, payload=1232)),
    ("the root", header() + b"\x00\x00\x02\x00\x01", query("", question=b"\x00\x00\x02\x00\x01")),
    ("a dot and a backslash inside labels are escaped", header() + b"\x03a.b\x03c\\d\x00" + A_IN,
     query("a\\.b.c\\\\d", question=b"\x03a.b\x03c\\d\x00" + A_IN)),
    ("a 46-byte label, whose length byte is a dot", header() + b"\x02ab\x2e" + b"c" * 46 + b"\x00" + A_IN,
     query("ab." + "c" * 46, question=b"\x02ab\x2e" + b"c" * 46 + b"\x00" + A_IN)),
    ("class CH", header() + WWW + b"\x00\x10\x00\x03", query(question=WWW + b"\x00\x10\x00\x03")),
    ("a 255-byte name", header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d"
     + b"d" * 61 + b"\x00" + A_IN,
     query(".".join(("a" * 63, "b" * 63, "c" * 63, "d" * 61)),
           question=b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d" + b"d" * 61 + b"\x00"
           + A_IN)),
]


@pytest.mark.parametrize("what, packet, decoded", GOLDEN, ids=[row[0] for row in GOLDEN])
def test_golden_queries(what: str, packet: bytes, decoded: Query) -> None:
    assert decode_query(packet) == decoded


def test_the_name_is_lower_case_the_question_as_asked() -> None:
    decoded = decode_query(header() + WWW + A_IN)
    assert decoded.name == "www.example.com"
    assert decoded.question == WWW + A_IN
    assert decoded.key == b"\x03www\x07example\x03com\x00" + A_IN


DROPPED = [
    ("empty", b"", "shorter than a DNS header"),
    ("shorter than a header", header()[:11], "shorter than a DNS header"),
    ("a response", header(flags=0x8100) + WWW + A_IN, "a response, not a query"),
]


@pytest.mark.parametrize("what, packet, reason", DROPPED, ids=[row[0] for row in DROPPED])
def test_dropped(what: str, packet: bytes, reason: str) -> None:
    with pytest.raises(Drop) as raised:
        decode_query(packet)
    assert str(raised.value) == reason


LONG_NAME = b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3e" + b"d" * 62 + b"\x00"  # 256
PAST_THE_END = "question name runs past the end of the packet"
RECORD_PAST_THE_END = "record runs past the end of the packet"
# each malformation, and the rule that rejects it (the reason names the check, so a packet caught by
# some other check by accident does not pass)
FORMERR = [
    ("no question", header(qd=0), "QDCOUNT is not 1"),
    ("two questions", header(qd=2) + WWW + A_IN + WWW + A_IN, "QDCOUNT is not 1"),
    ("the name runs past the end", header() + b"\x03ww", PAST_THE_END),
    ("no root label", header() + b"\x03www", PAST_THE_END),
    ("a compression pointer in the question", header() + b"\x03www\xc0\x0c" + A_IN,
     "compression or extended label in the question name"),
    ("an extended label type", header() + b"\x41" + b"a" * 65 + b"\x00" + A_IN,
     "compression or extended label in the question name"),
    ("a 64-byte label", header() + b"\x40" + b"a" * 64 + b"\x00" + A_IN,
     "compression or extended label in the question name"),
    ("a 256-byte name", header() + LONG_NAME + A_IN, "question name longer than 255 bytes"),
    ("no type and class", header() + WWW, "question type and class run past the end of the packet"),
    ("half a type and class", header() + WWW + b"\x00\x01", "question type and class run past the end of the packet"),
    ("two OPT records", header(ar=2) + WWW + A_IN + opt() + opt(), "more than one OPT record"),
    ("an OPT owned by another name", header(ar=1) + WWW + A_IN + opt(owner=b"\x01a\x00"),
     "OPT owner name is not the root"),
    ("an additional record cut short", header(ar=1) + WWW + A_IN + opt()[:8],
     "additional record runs past the end of the packet"),
    ("an additional record's data cut short", header(ar=1) + WWW + A_IN + opt(options=bytes(8))[:-2],
     "additional record data runs past the end of the packet"),
    ("a missing additional record", header(ar=1) + WWW + A_IN, "name runs past the end of the packet"),
    ("an additional record's name runs past the end", header(ar=1) + WWW + A_IN + b"\x05ab",
     "name runs past the end of the packet"),
    ("an additional record's pointer cut short", header(ar=1) + WWW + A_IN + b"\xc0", "truncated compression pointer"),
    ("an additional record's bad label type", header(ar=1) + WWW + A_IN + b"\x41" + bytes(20), "bad label type"),
    ("an answer record that ends after its owner", header(an=1) + WWW + A_IN + b"\xc0\x0c", RECORD_PAST_THE_END),
    ("an answer record cut short", header(an=1) + WWW + A_IN + record(b"\xc0\x0c", 1, bytes(4))[:9],
     RECORD_PAST_THE_END),
    ("an answer record's data cut short", header(an=1) + WWW + A_IN + record(b"\xc0\x0c", 1, bytes(4))[:-1],
     "record data runs past the end of the packet"),
]


@pytest.mark.parametrize("what, packet, reason", FORMERR, ids=[row[0] for row in FORMERR])
def test_formerr(what: str, packet: bytes, reason: str) -> None:
    with pytest.raises(FormErr) as raised:
        decode_query(packet)
    assert str(raised.value) == reason


# -- the small builders ------------------------------------------------------------------------------------

def test_header_only_reply_keeps_id_opcode_and_rd_and_sets_qr_and_the_rcode() -> None:
    packet = header(qid=0xBEEF, flags=0x2000 | 0x0400 | 0x0200 | 0x0100 | 0x0010) + WWW + A_IN  # NOTIFY, AA, TC, RD, CD
    reply = header_only_reply(packet, 4)
    assert reply == struct.pack("!HHHHHH", 0xBEEF, 0x8000 | 0x2000 | 0x0100 | 4, 0, 0, 0, 0)


def test_header_only_reply_keeps_the_low_four_bits_of_the_rcode() -> None:
    reply = header_only_reply(header(flags=0) + WWW + A_IN, 16)  # BADVERS needs an OPT for its upper bits
    assert reply is not None and reply[3] == 0


@pytest.mark.parametrize("packet", [b"", header()[:11], header(flags=0x8000) + WWW + A_IN])
def test_header_only_reply_drops_what_is_not_a_query(packet: bytes) -> None:
    assert header_only_reply(packet, 1) is None


@pytest.mark.parametrize("name, wire", [
    ("www.example.com", b"\x03www\x07example\x03com\x00"),
    ("x.y", b"\x01x\x01y\x00"),
    ("", b"\x00"),
    ("a" * 63, b"\x3f" + b"a" * 63 + b"\x00"),
    (".".join(("a" * 63, "b" * 63, "c" * 63, "d" * 61)),
     b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d" + b"d" * 61 + b"\x00"),
])
def test_name_to_wire(name: str, wire: bytes) -> None:
    assert name_to_wire(name) == wire


@pytest.mark.parametrize("name, reason", [
    ("a..b", "'a..b' has an empty or over-long label"),
    (".a", "'.a' has an empty or over-long label"),
    ("a.", "'a.' has an empty or over-long label"),
    ("a" * 64, f"'{'a' * 64}' has an empty or over-long label"),
    (".".join(("a" * 63, "b" * 63, "c" * 63, "d" * 62)),
     f"'{'.'.join(('a' * 63, 'b' * 63, 'c' * 63, 'd' * 62))}' is longer than 255 bytes"),
])
def test_name_to_wire_refuses_empty_and_long_labels_and_long_names(name: str, reason: str) -> None:
    with pytest.raises(FormErr) as raised:
        name_to_wire(name)
    assert str(raised.value) == reason


QUESTION = b"\x03www\x07example\x03com\x00" + A_IN


@pytest.mark.parametrize("mode, flags, edns, do", [
    (0, 0, False, False),
    (MODE_RD, 0x0100, False, False),
    (MODE_CD, 0x0010, False, False),
    (MODE_RD | MODE_CD, 0x0110, False, False),
    (MODE_EDNS, 0, True, False),
    (MODE_DO, 0, True, True),
    (MODE_RD | MODE_DO, 0x0100, True, True),
])
def test_query_for_key_asks_the_question_with_the_keys_flags_and_edns(mode: int, flags: int, edns: bool,
                                                                        do: bool) -> None:
    wire = query_for_key(QUESTION + bytes((mode,)), 0x4242, 4096)
    assert wire == header(0x4242, flags, ar=int(edns)) + QUESTION + (opt(4096, do=do) if edns else b"")
    message = dns.message.from_wire(wire)  # and dnspython reads it as that query
    assert message.question[0].name == dns.name.from_text("www.example.com")
    assert (message.edns == 0) == edns and bool(message.ednsflags & dns.flags.DO) == do


QUERY = header(qid=0x4242, flags=0x0100) + QUESTION
REPLY = header(qid=0x4242, flags=0x8180, an=1) + b"\x03WWW\x07example\x03COM\x00" + A_IN + record(b"\xc0\x0c", 1,
                                                                                                   bytes(4))


@pytest.mark.parametrize("what, reply, matches", [
    ("the same ID and question, in another case", REPLY, True),
    ("the question and nothing else", REPLY[:4] + b"\x00\x01\x00\x00" + REPLY[8:12 + len(QUESTION)], True),
    ("AA and TC set", REPLY[:2] + b"\x86\x80" + REPLY[4:], True),
    ("another ID", b"\x42\x43" + REPLY[2:], False),
    ("not a response", REPLY[:2] + b"\x01\x80" + REPLY[4:], False),
    ("another opcode", REPLY[:2] + b"\x88\x80" + REPLY[4:], False),
    ("no question", REPLY[:4] + b"\x00\x00" + REPLY[6:], False),
    ("another name", REPLY[:13] + b"wwx" + REPLY[16:], False),
    ("another type", REPLY[:29] + b"\x1c" + REPLY[30:], False),
    ("another class", REPLY[:31] + b"\x03" + REPLY[32:], False),
    ("cut inside the question", REPLY[:20], False),
])
def test_reply_matches_only_a_reply_to_the_same_question(what: str, reply: bytes, matches: bool) -> None:
    assert reply_matches(reply, QUERY, len(QUESTION)) is matches


# -- every query dnspython builds decodes the same --------------------------------------------------------

label_text = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.\\", min_size=1, max_size=63)
names = st.lists(label_text.map(str.encode), max_size=4).map(lambda labels: dns.name.Name([*labels, b""])).filter(
    lambda name: len(name.to_wire()) <= 255)


@st.composite
def dnspython_queries(draw: st.DrawFn) -> dns.message.QueryMessage:
    edns = draw(st.none() | st.integers(0, 255))
    message = dns.message.make_query(
        draw(names), draw(st.integers(1, 65535).filter(lambda t: t != 41)), rdclass=draw(st.integers(1, 65535)),
        use_edns=edns if edns is not None else False, payload=draw(st.integers(0, 65535)),
        want_dnssec=draw(st.booleans()) if edns is not None else False)
    message.id = draw(st.integers(0, 65535))
    message.flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD]))
    message.set_opcode(draw(st.sampled_from([dns.opcode.QUERY, dns.opcode.NOTIFY, dns.opcode.UPDATE])))
    return message


@given(dnspython_queries())
def test_every_query_dnspython_builds_decodes_to_the_same_fields(message: dns.message.QueryMessage) -> None:
    wire = message.to_wire()
    decoded = decode_query(wire)
    name = message.question[0].name
    assert decoded.name == ("" if name == dns.name.root else name.to_text(omit_final_dot=True).lower())
    assert (decoded.id, decoded.flags, decoded.opcode) == (message.id, message.flags, message.opcode())
    assert (decoded.qtype, decoded.qclass) == (message.question[0].rdtype, message.question[0].rdclass)
    assert decoded.question == wire[12:12 + len(name.to_wire()) + 4]
    assert decoded.key == decoded.question[:-4].lower() + decoded.question[-4:]
    assert decoded.edns == (message.edns >= 0)
    if message.edns >= 0:
        assert decoded.payload == max(message.payload, 512)
        assert decoded.do == bool(message.ednsflags & dns.flags.DO)
        assert decoded.edns_version == message.edns
    else:
        assert (decoded.payload, decoded.do) == (512, False)


@given(dnspython_queries(), st.lists(st.tuples(st.sampled_from([dns.edns.NSID, dns.edns.COOKIE, 65001]),
                                               st.integers(0, 700)), max_size=2), st.booleans())
def test_the_hot_paths_read_of_a_plain_query_is_what_decoding_gives(message: dns.message.QueryMessage,
                                                                   options: list[tuple[int, int]],
                                                                   version_0: bool) -> None:
    """`read_plain` reads exactly the plain queries (QUERY opcode, EDNS version 0 or none), and its key and
    Query are what `decode_query` and `question_key` make of them, whatever EDNS options the query carries
    (their length is the OPT record's RDLENGTH, over 255 bytes too; an NSID asked for is in the key)."""
    if message.edns >= 0:
        message.use_edns(0 if version_0 else message.edns, message.ednsflags, message.payload,
                         options=[dns.edns.GenericOption(code, b"x" * size) for code, size in options])
    wire = message.to_wire(max_size=65535)
    plain = read_plain(wire)
    decoded = decode_query(wire)
    assert (plain is not None) == (decoded.opcode == 0 and decoded.edns_version == 0)
    if plain is not None:
        key, end, payload = plain
        assert key == question_key(decoded)
        assert end == 12 + len(decoded.question) - 4
        assert plain_query(wire, key, end, payload) == decoded


def test_a_query_asking_for_the_nsid_has_a_key_of_its_own() -> None:
    nsid = read_plain(header(ar=1) + WWW + A_IN + opt(1232, options=b"\x00\x0a\x00\x00" + b"\x00\x03\x00\x00"))
    cookie = read_plain(header(ar=1) + WWW + A_IN + opt(1232, options=b"\x00\x0a\x00\x00"))
    short = read_plain(header(ar=1) + WWW + A_IN + opt(1232, options=b"\x00\x03\x00\x01"))  # runs past the end
    assert nsid is not None and cookie is not None and short is not None
    assert nsid[0][-1] == cookie[0][-1] | MODE_NSID and cookie[0][-1] == short[0][-1] == MODE_RD | MODE_EDNS
    assert nsid[0][:-1] == cookie[0][:-1]


@pytest.mark.parametrize("what, packet", [
    ("a response", header(flags=0x8100) + WWW + A_IN),
    ("two questions", header(qd=2) + WWW + A_IN + WWW + A_IN),
    ("an answer record", header(an=1) + WWW + A_IN + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
    ("bytes after the question", header() + WWW + A_IN + b"\x00"),
    ("an OPT record with bytes after it", header(ar=1) + WWW + A_IN + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
     + b"\x00"),
    ("an OPT record whose data runs short", header(ar=1) + WWW + A_IN + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04"),
    ("an additional record other than OPT", header(ar=1) + WWW + A_IN + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
    ("256 additional records claimed", header(ar=256) + WWW + A_IN + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"),
    ("256 additional records claimed, none there", header(ar=256) + WWW + A_IN),
    ("257 additional records claimed", header(ar=257) + WWW + A_IN + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"),
    ("a header and nothing else", header()),
])
def test_anything_but_a_plain_query_is_left_to_decoding(what: str, packet: bytes) -> None:
    assert read_plain(packet) is None, what


@given(st.lists(st.lists(st.sampled_from(b"aZ09-_.\\\xe9\xc9"), min_size=1, max_size=63).map(bytes), max_size=3))
def test_a_name_reads_as_its_labels_lower_case_with_dots_and_backslashes_in_them_escaped(labels: list[bytes]) -> None:
    """The question name, whatever bytes its labels hold (RFC 4343 2.1: `\\.` and `\\\\` inside a label)."""
    question = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00" + A_IN
    escaped = [label.decode("latin-1").lower().replace("\\", "\\\\").replace(".", "\\.") for label in labels]
    assert decode_query(header() + question).name == ".".join(escaped)
