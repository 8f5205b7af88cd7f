"""Answer -> reply bytes, written directly (RFC 1035 4.1), and replies cut to a client's size.

Rules this module keeps:
- `encode` writes the reply to a query's question: the question as `query.key` (lower case; the
  pipeline copies in the query's case), the header flags the answer and the query decide, every
  record of the answer in order, and an OPT record exactly when the query had one (RFC 6891).
  Nothing is truncated here: `fit` cuts a reply to a client's size.
- Names are compressed (RFC 1035 4.1.4): an owner name equal to the question points at it, so the
  query's case is echoed in the records too; every name points at the longest suffix already
  written.  SRV targets are written whole but can be pointed at (RFC 2782: no compression there).
- Names are dotted ASCII text without the trailing dot, as the resolver gives them (lower case).
  A name that cannot be written (an escaped dot, an empty or over-long label, non-ASCII) raises
  `Unencodable`, as do a bad address or a field out of range: the pipeline answers SERVFAIL.
- A record whose data is `bytes` (any type but A) is written with that RDATA as it is: no SOA
  serial is recorded for it, so `patch_serial` never touches a serial the answer table did not write.
- `fit` and `patch_serial` work on the bytes, never re-encoding; compression pointers only point
  backwards, so any prefix of the records stays valid.
- Pure: no I/O, no clock, no state kept between calls.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, NamedTuple

from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.codes import (
    AA,
    AAAA,
    CD,
    CNAME,
    DO,
    MAX_LABEL,
    NS,
    OPT,
    OPT_RECORD,
    PTR,
    QR,
    RA,
    RD,
    SOA,
    SRV,
    TC,
    TXT,
    A,
)
from dns_server.protocol.names import MAX_NAME_TEXT
from dns_server.protocol.wire import HEADER_LEN, FormErr, Query, skip_name

MAX_CHARACTER_STRING = 255  # RFC 1035 3.3: one length byte
MAX_POINTER_OFFSET = 0x3FFF  # RFC 1035 4.1.4: 14 bits of offset

_HEADER = struct.Struct("!HHHHHH")
_COUNTS = struct.Struct("!HHH")  # ANCOUNT, NSCOUNT, ARCOUNT
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_SRV_FIXED = struct.Struct("!HHH")
_SOA_TIMES = struct.Struct("!IIIII")
_QUESTION_POINTER = (0xC000 | HEADER_LEN).to_bytes(2, "big")
_pack_rr = _RR_FIXED.pack
_NOT_ENCODED = (Outcome.FORWARD, Outcome.CHASE)


class Unencodable(ValueError):
    """An answer that cannot be written: a bad name, address, TTL or record type (answer SERVFAIL)."""


class Encoded(NamedTuple):
    wire: bytes  # the reply: ID, question exactly as query.key (lower case), records, OPT
    serial_at: int  # offset of the first SOA record's SERIAL in `wire`, -1 if none (see patch_serial)


def encode(query: Query, answer: Answer, bufsize: int) -> Encoded:
    """The whole reply to `query` (never truncated: see `fit`); `bufsize` goes in the OPT record.

    FORWARD and CHASE answers are finished by the pipeline with upstream records: ValueError.
    """
    outcome = answer.outcome
    if outcome in _NOT_ENCODED:
        raise ValueError(f"a {outcome.value} answer is finished upstream, not encoded")
    rcode = answer.rcode
    flags = _flags(query, rcode, outcome.authoritative)
    qname = query.name if _writable(query.name) else None
    names: dict[str, int] | None = None  # the compression table, made at the first name not the question
    rclass = answer.record_class
    serial_at = -1
    try:
        out = bytearray(_HEADER.pack(query.id, flags, 1, len(answer.answer), len(answer.authority),
                                     len(answer.additional) + query.edns))
        out += query.key
        for section in (answer.answer, answer.authority, answer.additional):
            for rr in section:
                if rr.name == qname:
                    out += _QUESTION_POINTER
                else:
                    if names is None:
                        names = _question_names(qname)
                    _name(out, rr.name, names, True)
                rtype = rr.rtype
                data: Any = rr.data
                if rtype == A:
                    out += _pack_rr(A, rclass, rr.ttl, 4)
                    out += _ipv4(data)
                    continue
                if names is None:
                    names = _question_names(qname)
                start = len(out)
                out += _pack_rr(rtype, rclass, rr.ttl, 0)
                if type(data) is bytes:
                    out += data  # RDATA already in wire form (a template's record of any type), names uncompressed
                elif rtype == AAAA:
                    out += _ipv6(data)
                elif rtype == CNAME or rtype == PTR or rtype == NS:
                    _name(out, data, names, True)
                elif rtype == SRV:
                    priority, weight, port, target = data
                    out += _SRV_FIXED.pack(priority, weight, port)
                    _name(out, target, names, False)
                elif rtype == SOA:
                    mname, rname, *times = data
                    _name(out, mname, names, True)
                    _name(out, rname, names, True)
                    if serial_at < 0:
                        serial_at = len(out)
                    out += _SOA_TIMES.pack(*times)
                elif rtype == TXT:
                    out += _character_strings(data)
                else:
                    raise Unencodable(f"no encoder for record type {rtype} ({rr.name})")
                _U16.pack_into(out, start + 8, len(out) - start - _RR_FIXED.size)
        if query.edns:
            out += _opt(query, rcode, bufsize)
    except struct.error as error:  # a TTL, an SRV or SOA field, a count or the bufsize out of range
        raise Unencodable(f"a field out of range in the answer to {query.name!r}: {error}") from None
    return Encoded(bytes(out), serial_at)


def error_reply(query: Query, rcode: int, bufsize: int) -> bytes:
    """A reply without records (FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS), the question echoed as asked."""
    if rcode > 0xF and not query.edns:
        raise ValueError(f"rcode {rcode} needs an OPT record, and the query had none (RFC 6891 6.1.3)")
    reply = _HEADER.pack(query.id, _flags(query, rcode, False), 1, 0, 0, int(query.edns)) + query.question
    return reply + _opt(query, rcode, bufsize) if query.edns else reply


def _flags(query: Query, rcode: int, authoritative: bool) -> int:
    """The reply's two flag bytes: opcode, RD and CD from the query, AA, RA, the rcode's low bits.

    RA: the server does recurse (through its upstreams) for names outside its zones.  CoreDNS
    leaves RA clear on its own answers, and nslookup then says "Got recursion not available" and
    tries the next server (coredns/coredns#2857, #3690).
    """
    first = QR | query.opcode << 3 | (AA if authoritative else 0) | query.flags >> 8 & RD
    return first << 8 | RA | query.flags & CD | rcode & 0xF


def _opt(query: Query, rcode: int, bufsize: int) -> bytes:
    """Our OPT record: our buffer size, the rcode's upper bits, DO echoed (RFC 6891 6.1.3, RFC 3225 3)."""
    return OPT_RECORD.pack(0, OPT, bufsize, rcode >> 4, 0, DO if query.do else 0, 0)


def fit(wire: bytes, limit: int) -> bytes:
    """`wire` cut to at most `limit` bytes, keeping whole records in order, and the OPT record.

    Records are kept from the start of the answer section on, as long as each fits after those
    kept before it (as CoreDNS's `Msg.Truncate`); the OPT record is kept whatever else goes
    (RFC 6891 7).  TC is set only when an answer or authority record was dropped: additional
    records are not required (RFC 2181 9).  A reply that fits is returned unchanged.  When even
    the header, the question and the OPT do not fit, that is what is returned.  Raises FormErr
    for a message whose records run past its end.
    """
    if len(wire) <= limit:
        return wire
    qdcount = _U16.unpack_from(wire, 4)[0]
    ancount, nscount, arcount = _COUNTS.unpack_from(wire, 6)
    at = HEADER_LEN
    for _ in range(qdcount):
        at = skip_name(wire, at) + 4
    body_start = at
    ends = []  # where each answer, authority and additional record ends, up to the OPT
    opt = b""
    for index in range(ancount + nscount + arcount):
        start = at
        at = skip_name(wire, at)
        if at + _RR_FIXED.size > len(wire):
            raise FormErr("a record runs past the end of the message")
        rtype, _, _, rdlength = _RR_FIXED.unpack_from(wire, at)
        at += _RR_FIXED.size + rdlength
        if at > len(wire):
            raise FormErr("record data runs past the end of the message")
        if rtype == OPT and index >= ancount + nscount:
            opt = wire[start:at]  # in our replies, the last record; anything after it is dropped too
            break
        ends.append(at)
    room = limit - len(opt)
    kept = 0
    cut = body_start
    for end in ends:
        if end > room:
            break
        kept += 1
        cut = end
    flags = wire[2] | TC if kept < ancount + nscount else wire[2]
    kept_answer = min(kept, ancount)
    kept_authority = min(kept - kept_answer, nscount)
    kept_additional = kept - kept_answer - kept_authority + (1 if opt else 0)
    return (wire[:2] + bytes((flags,)) + wire[3:6] + _COUNTS.pack(kept_answer, kept_authority, kept_additional)
            + wire[HEADER_LEN:cut] + opt)


def with_option(wire: bytes, option: bytes) -> bytes:
    """A reply with an EDNS option (code, length and data) appended to its OPT record (RFC 6891 6.1.2);
    unchanged without one, or when `option` is empty.

    Raises FormErr for a message whose records run past its end.
    """
    if not option:
        return wire
    ancount, nscount, arcount = _COUNTS.unpack_from(wire, 6)
    at = skip_name(wire, HEADER_LEN) + 4
    for index in range(ancount + nscount + arcount):
        at = skip_name(wire, at)
        if at + _RR_FIXED.size > len(wire):
            raise FormErr("a record runs past the end of the message")
        rtype, _, _, rdlength = _RR_FIXED.unpack_from(wire, at)
        end = at + _RR_FIXED.size + rdlength
        if rtype == OPT and index >= ancount + nscount:
            return (wire[:at + 8] + _U16.pack(rdlength + len(option)) + wire[at + _RR_FIXED.size:end] + option
                    + wire[end:])
        at = end
    return wire


def rotate(wire: bytes, turn: int) -> bytes:
    """`wire` with the A and AAAA records ending its answer section rotated by `turn` places.

    For replies this server did not write (forwarded ones), so it only moves what cannot break a
    compression pointer: a run of address records that ends the answer section, in a reply with no
    authority or additional records but the OPT, none of whose owner names points into the run
    (address data holds no names).  Any other reply comes back unchanged.
    """
    qdcount, ancount, nscount, arcount = _U16.unpack_from(wire, 4)[0], *_COUNTS.unpack_from(wire, 6)
    if ancount < 2 or qdcount != 1 or nscount or arcount > 1:
        return wire
    at = skip_name(wire, HEADER_LEN) + 4
    records: list[tuple[int, int, int]] = []  # (start, end, type) of each answer record
    for _ in range(ancount):
        start = at
        at = skip_name(wire, at)
        rtype, _, _, rdlength = _RR_FIXED.unpack_from(wire, at)
        at += _RR_FIXED.size + rdlength
        records.append((start, at, rtype))
    if arcount and _RR_FIXED.unpack_from(wire, at + 1)[0] != OPT:
        return wire
    run = len(records)
    while run and records[run - 1][2] in (A, AAAA):
        run -= 1
    tail = records[run:]
    if len(tail) < 2 or turn % len(tail) == 0:
        return wire
    first = tail[0][0]
    if not all(_points_before(wire, start, first) for start, _, _ in tail):
        return wire
    turn %= len(tail)
    order = tail[turn:] + tail[:turn]
    return wire[:first] + b"".join(wire[start:end] for start, end, _ in order) + wire[tail[-1][1]:]


def _points_before(wire: bytes, at: int, limit: int) -> bool:
    """Whether the name at `at` ends without a pointer, or with one to an offset before `limit`."""
    while True:
        length = wire[at]
        if length == 0:
            return True
        if length & 0xC0 == 0xC0:
            return int(_U16.unpack_from(wire, at)[0]) & MAX_POINTER_OFFSET < limit
        at += length + 1


def patch_serial(wire: bytes, serial_at: int, serial: int) -> bytes:
    """`wire` with the SOA serial at `serial_at` (from `Encoded`) replaced by `serial`."""
    if not HEADER_LEN <= serial_at <= len(wire) - 4:
        raise ValueError(f"no SOA serial at offset {serial_at} of a {len(wire)}-byte reply")
    return wire[:serial_at] + _U32.pack(serial) + wire[serial_at + 4:]


def _writable(name: str) -> bool:
    """Whether record names can be compared with `name`: not the root, no escapes, ASCII."""
    return bool(name) and "\\" not in name and name.isascii()


def _question_names(name: str | None) -> dict[str, int]:
    """The compression table seeded with the question `name`: each suffix -> its offset.

    A question that is not `_writable` (None) seeds nothing: no record name can equal it.
    """
    if name is None:
        return {}
    names = {}
    at = HEADER_LEN  # in wire form, each label's length byte stands where a dot (or nothing) stood
    for label in name.split("."):
        names[name[at - HEADER_LEN:]] = at
        at += len(label) + 1
    return names


def _name(out: bytearray, name: str, names: dict[str, int], compress: bool) -> None:
    """Append `name`, ending in a pointer to the longest suffix in `names` when `compress`.

    The suffixes written are added to `names` where a pointer can reach them.  `names` holds
    every suffix of what it holds (or those suffixes lie beyond a pointer's reach), so an
    uncompressed name stops adding at its first known suffix.
    """
    if compress:
        at = names.get(name)
        if at is not None:
            out += _U16.pack(0xC000 | at)
            return
    if not name:
        out.append(0)
        return
    if len(name) > MAX_NAME_TEXT or "\\" in name or not name.isascii():
        raise Unencodable(f"cannot write the name {name!r}: longer than 253 characters, an escape, or not ASCII")
    labels = name.encode().split(b".")
    suffix = 0  # where the suffix starting at this label starts in `name`
    known = False
    for index, label in enumerate(labels):
        if index and not known:
            at = names.get(name[suffix:])
            if at is not None:
                if compress:
                    out += _U16.pack(0xC000 | at)
                    return
                known = True
        length = len(label)
        if not 0 < length <= MAX_LABEL:
            raise Unencodable(f"cannot write the name {name!r}: an empty label or one over 63 characters")
        if not known and len(out) <= MAX_POINTER_OFFSET:
            names[name[suffix:]] = len(out)
        out.append(length)
        out += label
        suffix += length + 1
    out.append(0)


def _ipv4(address: str) -> bytes:
    """The four bytes of a dotted-quad address (canonical text: `records.normalize_ip`)."""
    try:
        packed = bytes(map(int, address.split(".")))
    except ValueError:
        packed = b""
    if len(packed) != 4:
        raise Unencodable(f"{address!r} is not an IPv4 address")
    return packed


def _ipv6(address: str) -> bytes:
    try:
        return ipaddress.IPv6Address(address).packed
    except ValueError:
        raise Unencodable(f"{address!r} is not an IPv6 address") from None


def _character_strings(text: str) -> bytes:
    """TXT RDATA: the text's UTF-8 bytes as character-strings of at most 255 bytes (RFC 1035 3.3.14)."""
    data = text.encode()
    if not data:
        return b"\x00"
    return b"".join(bytes((len(chunk),)) + chunk
                    for chunk in (data[i:i + MAX_CHARACTER_STRING] for i in range(0, len(data), MAX_CHARACTER_STRING)))
