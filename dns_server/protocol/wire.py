"""Query decoding and reply patching at the byte level (RFC 1035 section 4, RFC 6891).

Rules this module keeps:
- It reads only the header, the question and the OPT record of a query; a query is never fully
  parsed on the hot path.  Anything malformed raises `FormErr` (answer FORMERR) or `Drop` (no
  answer at all), and nothing else.
- A reply built for one query is reused for every query with the same question key
  (`question_key`: the question, name lower-cased, and a mode byte for RD, CD, EDNS, DO and
  whether the OPT record asks for the server's NSID, RFC 5001, which the reply then carries): the
  user copies in the new ID and the question exactly as asked (answers compress their owner names
  against the question, so they echo its case too).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from dns_server.protocol.codes import (
    CD,
    CLASS_IN,
    DO,
    EDNS_OPTION,
    MAX_LABEL,
    MAX_NAME_LEN,
    NO_EDNS_PAYLOAD,
    NSID,
    OPT,
    OPT_PREFIX,
    OPT_RECORD,
    QR,
    RD,
)

HEADER_LEN = 12
# The mode byte that ends a question key (see `question_key`): what else, besides the question,
# makes two replies differ.
MODE_EDNS, MODE_DO, MODE_RD, MODE_CD, MODE_NSID = 0x01, 0x02, 0x04, 0x08, 0x10
_HEADER = struct.Struct("!HBBHHHH")
_U16 = struct.Struct("!H")
_STUB_HEADER = _HEADER.pack(0, RD, 0, 1, 0, 0, 0)
_TYPE_CLASS = struct.Struct("!HH")


class Drop(Exception):
    """Input that gets no answer at all: too short to answer, or a response (QR=1)."""


class FormErr(Exception):
    """A query whose header we can answer, but whose body is malformed: reply FORMERR."""


class Query(NamedTuple):
    """The parts of a query that decide its answer (a NamedTuple: immutable and cheap to make per query)."""

    id: int
    opcode: int
    name: str  # lower case, dotted, no trailing dot; "" for the root
    qtype: int
    qclass: int
    question: bytes  # name + type + class exactly as received
    key: bytes  # the question with the name lower-cased: the answer cache key
    edns: bool
    payload: int  # the UDP payload the client accepts (512 without EDNS)
    do: bool  # DNSSEC OK (RFC 3225)
    edns_version: int
    flags: int  # the header's two flag bytes as received
    options: bytes = b""  # the OPT record's RDATA: its EDNS options as received


def question_end(data: bytes) -> int:
    """Offset just past the question's name; raises FormErr for a bad or compressed name."""
    i = HEADER_LEN
    n = len(data)
    while True:
        if i >= n:
            raise FormErr("question name runs past the end of the packet")
        length = data[i]
        if length == 0:
            break
        if length > MAX_LABEL:
            raise FormErr("compression or extended label in the question name")
        i += length + 1
    i += 1
    if i - HEADER_LEN > MAX_NAME_LEN:
        raise FormErr("question name longer than 255 bytes")
    return i


def decode_name(wire: bytes) -> str:
    """Dotted lower-case text of an uncompressed wire name (already validated).

    A dot or backslash inside a label is escaped (RFC 4343 2.1), so such a label never matches a
    cluster name by accident.  Every fresh question is decoded here, so a name without either byte
    is copied whole and its length bytes overwritten with dots, rather than read a label at a time
    (a length byte of 46 is a dot too: that name takes the slow way, to the same text).
    """
    dots = []  # where the length bytes after the first stand in the text
    at = 0
    while length := wire[at]:
        if at:
            dots.append(at - 1)
        at += length + 1
    raw = wire[1:at]
    if b"." in raw or b"\\" in raw:
        return _escaped_name(wire)
    text = bytearray(raw)
    for dot in dots:
        text[dot] = 0x2E
    return text.decode("latin-1").lower()


def _escaped_name(wire: bytes) -> str:
    """`decode_name` a label at a time, escaping a dot or backslash inside one."""
    labels = []
    i = 0
    while wire[i]:
        length = wire[i]
        label = wire[i + 1:i + 1 + length].decode("latin-1").lower()
        if "." in label or "\\" in label:
            label = label.replace("\\", "\\\\").replace(".", "\\.")
        labels.append(label)
        i += length + 1
    return ".".join(labels)


def skip_name(data: bytes, i: int) -> int:
    """Offset past a possibly compressed name starting at i (pointers are not followed)."""
    n = len(data)
    while True:
        if i >= n:
            raise FormErr("name runs past the end of the packet")
        length = data[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            if i + 2 > n:
                raise FormErr("truncated compression pointer")
            return i + 2
        if length > MAX_LABEL:
            raise FormErr("bad label type")
        i += length + 1


def decode_query(data: bytes) -> Query:
    """Decode a query's header, question and OPT; raises Drop or FormErr."""
    if len(data) < HEADER_LEN:
        raise Drop("shorter than a DNS header")
    qid, flags1, flags2, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags1 & QR:
        raise Drop("a response, not a query")
    opcode = (flags1 >> 3) & 0xF
    if qdcount != 1:
        raise FormErr("QDCOUNT is not 1")
    end = question_end(data)
    qend = end + 4
    if qend > len(data):
        raise FormErr("question type and class run past the end of the packet")
    qtype, qclass = struct.unpack_from("!HH", data, end)
    question = data[HEADER_LEN:qend]
    key = data[HEADER_LEN:end].lower() + data[end:qend]
    name = decode_name(question)
    edns = False
    payload = NO_EDNS_PAYLOAD
    do = False
    version = 0
    options = b""
    if ancount or nscount or arcount:
        i = qend
        for _ in range(ancount + nscount):
            i = _skip_rr(data, i)
        for _ in range(arcount):
            start = i
            i = skip_name(data, i)
            if i + 10 > len(data):
                raise FormErr("additional record runs past the end of the packet")
            # read as an OPT record from the owner name's last byte (the root's, when it is the root)
            _, rtype, rclass, _, version_here, opt_flags, rdlength = OPT_RECORD.unpack_from(data, i - 1)
            if rtype == OPT:
                if edns:
                    raise FormErr("more than one OPT record")  # RFC 6891 6.1.1
                if i != start + 1:
                    raise FormErr("OPT owner name is not the root")
                edns = True
                payload = max(rclass, NO_EDNS_PAYLOAD)
                do = bool(opt_flags & DO)
                version = version_here
                options = data[i + 10:i + 10 + rdlength]
            i += 10 + rdlength
            if i > len(data):
                raise FormErr("additional record data runs past the end of the packet")
    return Query(qid, opcode, name, qtype, qclass, question, key, edns, payload, do, version,
                 (flags1 << 8) | flags2, options)


def read_plain(data: bytes) -> tuple[bytes, int, int] | None:
    """The hot path's read of a plain query, without decoding it: (question key, offset past the
    question's name, the client's UDP payload), the key the same bytes as `question_key` makes.

    A plain query has QR, opcode and the header's other high bits clear, one question, no answer
    or authority records, and nothing but an EDNS version 0 OPT record after the question.  Anything
    else is None (`decode_query` reads it); a bad question name raises FormErr.
    """
    if len(data) <= HEADER_LEN or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None
    end = question_end(data)
    qend = end + 4
    mode = (data[2] & RD) << 2 | (data[3] & CD) >> 1
    payload = NO_EDNS_PAYLOAD
    if data[11] == 1 and not data[10] and data[qend:qend + 3] == OPT_PREFIX and data[qend + 6] == 0:
        options = data[qend + 10] | data[qend + 9] << 8
        if len(data) != qend + 11 + options:
            return None
        mode |= MODE_DO if data[qend + 7] & (DO >> 8) else MODE_EDNS
        if options and has_option(data[qend + 11:], NSID):
            mode |= MODE_NSID
        payload = data[qend + 4] | data[qend + 3] << 8
    elif data[10] or data[11] or len(data) != qend:
        return None
    return data[HEADER_LEN:end].lower() + data[end:qend] + bytes((mode,)), end, payload


def plain_query(data: bytes, key: bytes, end: int, payload: int) -> Query:
    """The Query of a plain query, from what `read_plain` read (for a question the answer table lacks)."""
    edns = bool(key[-1] & (MODE_EDNS | MODE_DO))
    return Query(data[0] << 8 | data[1], 0, decode_name(key), data[end + 1] | data[end] << 8,
                 data[end + 3] | data[end + 2] << 8, data[HEADER_LEN:end + 4], key[:-1], edns,
                 max(payload, NO_EDNS_PAYLOAD), bool(key[-1] & MODE_DO), 0, data[2] << 8 | data[3],
                 data[end + 15:] if edns else b"")


def _skip_rr(data: bytes, i: int) -> int:
    i = skip_name(data, i)
    if i + 10 > len(data):
        raise FormErr("record runs past the end of the packet")
    (rdlength,) = _U16.unpack_from(data, i + 8)
    i += 10 + rdlength
    if i > len(data):
        raise FormErr("record data runs past the end of the packet")
    return i


def question_key(query: Query) -> bytes:
    """The answer caches' key: the question with its name lower-cased, and the mode byte.

    The hot path reads the same bytes from the raw query (`read_plain`).
    """
    mode = (MODE_RD if query.flags & (RD << 8) else 0) | (MODE_CD if query.flags & CD else 0)
    if query.edns:
        mode |= MODE_DO if query.do else MODE_EDNS
        if query.options and has_option(query.options, NSID):
            mode |= MODE_NSID
    return query.key + bytes((mode,))


def has_option(options: bytes, code: int) -> bool:
    """Whether an OPT record's RDATA holds an option of this code (options that run past the end do not count)."""
    at = 0
    while at + EDNS_OPTION.size <= len(options):
        found, length = EDNS_OPTION.unpack_from(options, at)
        at += EDNS_OPTION.size + length
        if found == code and at <= len(options):
            return True
    return False


def edns_options(options: bytes) -> list[tuple[int, bytes]]:
    """An OPT record's RDATA as (code, data) pairs, up to the first option that runs past the end."""
    found = []
    at = 0
    while at + EDNS_OPTION.size <= len(options):
        code, length = EDNS_OPTION.unpack_from(options, at)
        at += EDNS_OPTION.size
        if at + length > len(options):
            break
        found.append((code, options[at:at + length]))
        at += length
    return found


def header_only_reply(data: bytes, rcode: int) -> bytes | None:
    """A reply with only a header (for queries whose question cannot be read), or None to drop."""
    if len(data) < HEADER_LEN or data[2] & QR:
        return None
    flags1 = QR | (data[2] & 0x79)  # keep opcode and RD
    return data[:2] + bytes((flags1, rcode & 0xF)) + bytes(8)


def name_to_wire(name: str) -> bytes:
    """Uncompressed wire form of a dotted name (no trailing dot); raises FormErr for a bad one."""
    labels = [label.encode("ascii") for label in name.split(".")] if name else []
    if any(not 0 < len(label) <= MAX_LABEL for label in labels):
        raise FormErr(f"{name!r} has an empty or over-long label")
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    if len(wire) > MAX_NAME_LEN:
        raise FormErr(f"{name!r} is longer than 255 bytes")
    return wire


def stub_query(name: str, qtype: int) -> bytes:
    """The query glibc's and musl's stub resolvers send for a name: ID 0, RD, class IN, no EDNS.

    Raises FormErr for a name no query can carry.
    """
    return _STUB_HEADER + name_to_wire(name) + _TYPE_CLASS.pack(qtype, CLASS_IN)


def with_options(key: bytes, options: bytes) -> bytes:
    """A question key that also carries EDNS options to send upstream, between the question and the
    mode byte (rewrite's edns0 rules): a key of its own for the forward cache and exchanges in flight."""
    return key[:-1] + options + key[-1:]


def key_question_len(key: bytes) -> int:
    """The length of the question at the start of a question key (which may carry options after it)."""
    return skip_name(key, 0) + 4


def query_for_key(key: bytes, qid: int, payload: int, options: bytes = b"") -> bytes:
    """The query a question key stands for: its question, RD and CD, and EDNS with the DO bit.

    `payload` is the UDP size announced in the OPT record (RFC 6891 6.2.5), when the key asks for EDNS
    or there are EDNS `options` to send: those the key carries (`with_options`), then `options`.
    """
    mode = key[-1]
    question_len = key_question_len(key)
    options = key[question_len:-1] + options
    edns = bool(mode & (MODE_EDNS | MODE_DO)) or bool(options)
    message = _HEADER.pack(qid, RD if mode & MODE_RD else 0, CD if mode & MODE_CD else 0, 1, 0, 0,
                           1 if edns else 0) + key[:question_len]
    if edns:
        message += OPT_RECORD.pack(0, OPT, payload, 0, 0, DO if mode & MODE_DO else 0, len(options)) + options
    return message


def reply_matches(reply: bytes, query: bytes, question_len: int) -> bool:
    """Whether `reply` answers `query`: same ID, QR set, opcode QUERY, same question (RFC 5452 9.1).

    The name is compared case-insensitively; `query`'s name must be lower case.
    """
    end = HEADER_LEN + question_len
    return (len(reply) >= end and reply[:2] == query[:2] and reply[2] & 0xF8 == QR
            and reply[4:6] == b"\x00\x01"
            and reply[HEADER_LEN:end - 4].lower() == query[HEADER_LEN:end - 4]
            and reply[end - 4:end] == query[end - 4:end])
