"""Answer -> wire bytes: header flags, EDNS0 (RFC 6891), name compression, truncation.

Built with dnslib.  Encoding happens once per (question, snapshot): the pipeline caches the bytes,
so clarity wins over speed here, with one exception: negative answers (NXDOMAIN or NODATA with
the zone's SOA) are written directly.  Every distinct name a pod looks up outside the cluster
first costs six search-path misses (three search domains, A and AAAA), each a question never
seen before, so these are the answers most often encoded; dnslib took about 100 us for each.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import cast

from dnslib import AAAA as AAAARecord
from dnslib import CNAME as CNAMERecord
from dnslib import CLASS, EDNS0, QTYPE, SOA as SOARecord, SRV as SRVRecord, TXT as TXTRecord
from dnslib import A as ARecord
from dnslib import NS as NSRecord
from dnslib import PTR as PTRRecord
from dnslib import RR as WireRR
from dnslib import DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.dns import RD

from dns_server.answer import RR, Answer, SoaData, SrvData
from dns_server.wire import HEADER_LEN, FormErr, Query, name_to_wire

_QR, _AA, _RD, _RA, _CD = 0x8000, 0x0400, 0x0100, 0x0080, 0x0010
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_SOA_TIMES = struct.Struct("!IIIII")
_OPT = struct.Struct("!BHHBBHH")  # root name, type, UDP size, extended RCODE, version, flags, rdlength


def question_label(query: Query) -> DNSLabel:
    """The question name as dnslib labels, lower case, labels kept exactly as on the wire."""
    key = query.key
    labels = []
    i = 0
    while key[i]:
        labels.append(key[i + 1:i + 1 + key[i]])
        i += key[i] + 1
    return DNSLabel(labels)


def _rdata(rr: RR) -> RD:
    data = rr.data
    if rr.rtype == QTYPE.A:
        return ARecord(data)
    if rr.rtype == QTYPE.AAAA:
        return AAAARecord(data)
    if rr.rtype == QTYPE.CNAME:
        return CNAMERecord(data)
    if rr.rtype == QTYPE.PTR:
        return PTRRecord(data)
    if rr.rtype == QTYPE.NS:
        return NSRecord(data)
    if rr.rtype == QTYPE.TXT:
        return TXTRecord(data)
    if rr.rtype == QTYPE.SRV:
        priority, weight, port, target = cast(SrvData, data)
        return SRVRecord(priority, weight, port, target)
    if rr.rtype == QTYPE.SOA:
        mname, rname, *times = cast(SoaData, data)
        return SOARecord(mname, rname, tuple(times))
    raise ValueError(f"no encoder for record type {rr.rtype}")


def build(query: Query, rcode: int, answer: Answer | None, max_payload: int) -> DNSRecord:
    """The dnslib message for `answer` (or an empty reply with `rcode`) to `query`.

    RA is set: the server recurses (through its upstreams) for names outside its zones.
    """
    qname = question_label(query)
    header = DNSHeader(id=query.id, qr=1, opcode=query.opcode, rd=(query.flags >> 8) & 1, ra=1,
                       aa=int(bool(answer and answer.outcome.authoritative)), rcode=rcode & 0xF)
    header.cd = (query.flags >> 4) & 1
    message = DNSRecord(header, q=DNSQuestion(qname, query.qtype, query.qclass))
    if answer is not None:
        for section, records in ((message.rr, answer.answer), (message.auth, answer.authority),
                                 (message.ar, answer.additional)):
            for rr in records:
                owner = qname if rr.name == query.name else DNSLabel(rr.name)
                section.append(WireRR(owner, rr.rtype, ttl=rr.ttl, rdata=_rdata(rr)))
    if query.edns:
        # our buffer size, the extended RCODE bits, and DO echoed (RFC 6891 6.1.3, RFC 3225 3)
        message.add_ar(EDNS0(udp_len=max_payload, ext_rcode=rcode >> 4, version=0,
                             flags="do" if query.do else ""))
    return message


@dataclass(frozen=True, slots=True)
class Encoded:
    wire: bytes
    serial_at: int  # offset of the SOA serial, -1 if none


def encode(query: Query, answer: Answer, max_payload: int) -> Encoded:
    """Wire form of an answer (never truncated: see `fit`)."""
    if not answer.answer and not answer.additional and len(answer.authority) == 1 \
            and answer.authority[0].rtype == QTYPE.SOA:
        try:
            wire = _negative(query, answer, max_payload)
            return Encoded(wire, _serial_at(wire))
        except FormErr:
            pass  # a zone name we cannot write by hand: dnslib can
    wire = bytes(build(query, answer.rcode, answer, max_payload).pack())
    return Encoded(wire, _serial_at(wire))


def _serial_at(wire: bytes) -> int:
    parsed = DNSRecord.parse(wire)
    for rr in parsed.rr + parsed.auth:
        if rr.rtype == QTYPE.SOA:
            serial = rr.rdata.times[0]
            return wire.find(struct.pack("!I", serial), HEADER_LEN)
    return -1


def patch_serial(wire: bytes, serial_at: int, serial: int) -> bytes:
    return wire[:serial_at] + struct.pack("!I", serial) + wire[serial_at + 4:]


def fit(wire: bytes, limit: int) -> bytes:
    """Cut to `limit` bytes: additional records first, then everything (TC)."""
    question_len = len(DNSRecord.parse(wire).questions[0].qname.idna()) + 1 + 4
    lean = without_additional(wire, question_len)
    if len(lean) <= limit:
        return lean
    return truncate(wire, question_len)


def _negative(query: Query, answer: Answer, max_payload: int) -> bytes:
    """The same message `build` makes for an answer that is only the zone's SOA, written directly.

    The SOA's owner points into the question when the question lies in the zone, and the SOA's
    names point to its owner when they end in the zone (RFC 1035 4.1.4).
    """
    soa = answer.authority[0]
    mname, rname, *times = cast(SoaData, soa.data)
    flags = (_QR | query.opcode << 11 | (_AA if answer.outcome.authoritative else 0) | (query.flags & (_RD | _CD)) | _RA
             | answer.rcode & 0xF)
    message = bytearray(_HEADER.pack(query.id, flags, 1, 0, 1, 1 if query.edns else 0))
    message += query.key  # the question, in lower case (the pipeline puts the query's case back)
    owner = _pointer_into(query.key[:-4], _wire(soa.name), HEADER_LEN)
    if owner is None:
        owner_at = len(message)
        message += _wire(soa.name)
    else:
        owner_at = int.from_bytes(owner, "big") & 0x3FFF
        message += owner
    rdata = _under(mname, soa.name, owner_at) + _under(rname, soa.name, owner_at) + _SOA_TIMES.pack(*times)
    message += _RR_FIXED.pack(QTYPE.SOA, CLASS.IN, soa.ttl, len(rdata)) + rdata
    if query.edns:
        message += _OPT.pack(0, QTYPE.OPT, max_payload, answer.rcode >> 4, 0, 0x8000 if query.do else 0, 0)
    return bytes(message)


def _pointer_into(name: bytes, suffix: bytes, at: int) -> bytes | None:
    """A compression pointer to `suffix` inside `name` (which starts at offset `at`), if it ends there."""
    i = 0
    while name[i]:
        if name[i:] == suffix:
            return (0xC000 | (at + i)).to_bytes(2, "big")
        i += name[i] + 1
    return None


def _under(name: str, zone: str, zone_at: int) -> bytes:
    """`name` in wire form, its zone suffix as a pointer to `zone_at` when it ends in the zone."""
    if name.endswith("." + zone):
        return _wire(name[:-len(zone) - 1])[:-1] + (0xC000 | zone_at).to_bytes(2, "big")
    return _wire(name)


@functools.lru_cache(maxsize=64)  # zone names and the SOA's: a handful per server
def _wire(name: str) -> bytes:
    return name_to_wire(name)


def error_reply(query: Query, rcode: int, max_payload: int) -> bytes:
    """A reply with no records: FORMERR, NOTIMP, REFUSED, SERVFAIL or BADVERS, question echoed."""
    return bytes(build(query, rcode, None, max_payload).pack())


def without_additional(reply: bytes, question_len: int) -> bytes:
    """`reply` without its additional records, but for the OPT record (RFC 2181 9, RFC 6891 7)."""
    parsed = DNSRecord.parse(reply)
    parsed.ar = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    return _repacked(parsed, reply, question_len)


def truncate(reply: bytes, question_len: int) -> bytes:
    """`reply` cut to header, question and OPT, with TC set (RFC 2181 9, RFC 6891 7).

    The client retries over TCP; an OPT record, if present, is kept so it still learns our
    buffer size.
    """
    parsed = DNSRecord.parse(reply)
    opt = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    parsed.rr, parsed.auth, parsed.ar = [], [], opt
    parsed.header.tc = 1
    return _repacked(parsed, reply, question_len)


def _repacked(message: DNSRecord, original: bytes, question_len: int) -> bytes:
    """`message` packed, with the question bytes exactly as in `original` (their case)."""
    wire = bytes(message.pack())
    end = HEADER_LEN + question_len
    return wire[:HEADER_LEN] + original[HEADER_LEN:end] + wire[end:]

