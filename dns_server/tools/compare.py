"""A server's replies against a check's expected answer: every difference, with the section it breaks.

Each question is asked in mixed case (`mixed_case`), once over UDP without EDNS (as a stub
resolver asks first: 512 bytes) and once over TCP.  What is compared, and where it is required:

| difference | when | cites |
| --- | --- | --- |
| missing record, extra record | the answer section against the expected records (owner, type, data) | the check's section |
| wrong rcode | NOERROR against NXDOMAIN | the check's section |
| AA missing | the server is authoritative for the cluster's names | RFC 1035 4.1.1 |
| SOA missing | a negative answer (NXDOMAIN or no records) carries the zone's SOA in the authority section | RFC 2308 3 |
| TTL out of range | every TTL lies in the range given (`TtlRange`); `dns-version` only within RFC 2181's bound | RFC 2181 8 |
| TTLs differ in an RRset | the records of one RRset share one TTL | RFC 2181 5.2 |
| truncated without TC | a UDP reply holding fewer records than the TCP one must set TC | RFC 2181 9 |
| UDP and TCP differ | otherwise the two transports give the same rcode and records | RFC 1035 4.2 |
| question not echoed | the question section repeats the query's name exactly, case included | RFC 1035 7.3, RFC 4343 4.1 |
| no reply | the server did not answer within the timeout (after retries over UDP) | RFC 1035 4.2 |

The specification leaves TTLs to the implementation (2.1: "the standard DNS time-to-live value");
what is checked is that they are sane and consistent.  A UDP reply with TC set is not compared
further: the TCP reply stands for it.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from functools import cache

import dns.flags
import dns.rcode
import dns.rdatatype

from dns_server.tools.expectations import ANY_LABEL, Check

UDP, TCP = "UDP", "TCP"
MAX_TTL = 2**31 - 1  # RFC 2181 8
VERSION_KIND = "dns-version"  # its TTL is the server's choice (CoreDNS: 28800), bounded only by RFC 2181


@dataclass(frozen=True, slots=True)
class TtlRange:
    low: int = 0
    high: int = 3600  # the kubernetes plugin's upper bound for `ttl`

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What is compared of one reply."""

    transport: str
    question: str  # the question's name exactly as the reply spells it; "" when it has none
    rcode: str
    authoritative: bool
    truncated: bool
    answers: tuple[tuple[str, str, int, str], ...]  # (owner lower case, type, ttl, data as read_reply writes it)
    authority_soa: tuple[tuple[str, int], ...]  # (owner lower case, ttl) of each SOA in the authority section

    @property
    def records(self) -> frozenset[tuple[str, str, str]]:
        return frozenset((owner, rtype, data) for owner, rtype, _, data in self.answers)


@dataclass(frozen=True, slots=True)
class Difference:
    check: Check
    cites: str
    what: str  # one of the differences of the table above
    detail: str
    transport: str  # UDP, TCP or UDP+TCP

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}" if self.detail else self.what


def mixed_case(name: str) -> str:
    """`name` with every other letter in upper case: the server must echo it as asked."""
    letters = 0
    spelled = []
    for char in name:
        if char.isalpha():
            letters += 1
            char = char.upper() if letters % 2 else char
        spelled.append(char)
    return "".join(spelled)


class Unreadable(ValueError):
    """A reply that is not a DNS message: it counts as no reply."""


def read_reply(wire: bytes, transport: str) -> Reply:
    """What is compared of a reply, read straight from the wire (dnspython's parser costs more than the exchange).

    Record data is written as `expectations` writes it: addresses as text, SRV as `<port> <target>`,
    names in lower case with the final dot, TXT as quoted strings; other types in RFC 3597's `\\# n hex`.
    A reply with TC set may end anywhere (RFC 2181 9); anything else that cannot be read raises Unreadable.
    """
    try:
        flags, qdcount, ancount, nscount = struct.unpack_from("!2xHHHH2x", wire)
    except struct.error as error:
        raise Unreadable(str(error)) from None
    question = ""
    try:
        offset = 12
        for _ in range(qdcount):
            name, offset = _name(wire, offset)
            offset += 4
            question = question or name
        answers = []
        for _ in range(ancount):
            owner, rtype, ttl, data, offset = _record(wire, offset)
            answers.append((owner.lower(), rtype, ttl, data))
        soa = []
        for _ in range(nscount):
            owner, rtype, ttl, _, offset = _record(wire, offset)
            if rtype == "SOA":
                soa.append((owner.lower(), ttl))
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as error:
        if not flags & dns.flags.TC:
            raise Unreadable(str(error)) from None
        answers, soa = [], []  # cut short, as it says: the TCP reply stands for it
    return Reply(transport, question, dns.rcode.to_text(flags & 0xF), bool(flags & dns.flags.AA),
                 bool(flags & dns.flags.TC), tuple(answers), tuple(soa))


def _record(wire: bytes, offset: int) -> tuple[str, str, int, str, int]:
    owner, offset = _name(wire, offset)
    code, _, ttl, size = struct.unpack_from("!HHIH", wire, offset)
    start = offset + 10
    rdata = wire[start:start + size]
    if len(rdata) != size:
        raise ValueError("a record runs past the end of the message")
    rtype = dns.rdatatype.to_text(code)
    if rtype == "A" and size == 4:
        data = str(ipaddress.IPv4Address(rdata))
    elif rtype == "AAAA" and size == 16:
        data = str(ipaddress.IPv6Address(rdata))
    elif rtype == "SRV":
        data = f"{struct.unpack_from('!H', wire, start + 4)[0]} {_name(wire, start + 6)[0].lower()}"
    elif rtype in ("PTR", "CNAME"):
        data = _name(wire, start)[0].lower()
    elif rtype == "TXT":
        strings, at = [], 0
        while at < size:
            strings.append(rdata[at + 1:at + 1 + rdata[at]].decode("ascii"))
            at += 1 + rdata[at]
        data = " ".join(f'"{text}"' for text in strings)
    else:
        data = f"\\# {size} {rdata.hex()}"
    return owner, rtype, ttl, data, start + size


def _name(wire: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (compression pointers followed) and the offset after it."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # no name has more labels: a pointer loop ends here
        length = wire[offset]
        if length >= 0xC0:
            end = offset + 2 if end is None else end
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
        elif length:
            labels.append(wire[offset + 1:offset + 1 + length].decode("ascii"))
            offset += 1 + length
        else:
            return ".".join(labels) + ".", offset + 1 if end is None else end
    raise ValueError("a name's compression pointers loop")


def compare(check: Check, zone: str, ttl: TtlRange, udp: Reply | None, tcp: Reply | None) -> list[Difference]:
    """Every difference of the two replies from what `check` expects; a reply that did not come is None."""
    found: dict[tuple[str, str, str], list[str]] = {}  # (what, detail, cites) -> transports

    def add(transport: str, what: str, detail: str, cites: str) -> None:
        found.setdefault((what, detail, cites), []).append(transport)

    asked = mixed_case(check.name)
    judged = []
    for transport, reply in ((UDP, udp), (TCP, tcp)):
        if reply is None:
            add(transport, "no reply", "", "RFC 1035 4.2")
            continue
        if reply.question != asked:
            add(transport, "question not echoed", f"{reply.question or 'no question'}, asked {asked}",
                "RFC 1035 7.3, RFC 4343 4.1")
        if not (transport == UDP and reply.truncated):
            judged.append(reply)
    if udp is not None and tcp is not None and not udp.truncated:
        if udp.rcode == tcp.rcode and udp.records < tcp.records:
            add(UDP, "truncated without TC", f"{len(udp.answers)} of {len(tcp.answers)} records", "RFC 2181 9")
            judged.remove(udp)
        elif (udp.rcode, udp.records) != (tcp.rcode, tcp.records):
            add(UDP, "UDP and TCP differ", f"UDP {_summary(udp)}, TCP {_summary(tcp)}", "RFC 1035 4.2")
    for reply in judged:
        for what, detail, cites in _content_differences(check, zone, ttl, reply):
            add(reply.transport, what, detail, cites)
    return [Difference(check, cites, what, detail, "+".join(transports))
            for (what, detail, cites), transports in found.items()]


def _content_differences(check: Check, zone: str, ttl: TtlRange, reply: Reply) -> list[tuple[str, str, str]]:
    differences = []
    if reply.rcode != check.rcode:
        differences.append(("wrong rcode", f"{reply.rcode}, expected {check.rcode}", check.section))
    if reply.answers or reply.rcode == check.rcode:
        missing, extra = _match(check, reply)
        differences += [("missing record", data, check.section) for data in missing]
        differences += [("extra record", data, check.section) for data in extra]
    if not reply.authoritative:
        differences.append(("AA missing", "", "RFC 1035 4.1.1"))
    apex = zone.strip(".").lower() + "."
    if not check.answers and not any(owner == apex for owner, _ in reply.authority_soa):
        differences.append(("SOA missing", f"no SOA of {apex} in the authority section", "RFC 2308 3"))
    high = MAX_TTL if check.kind == VERSION_KIND else ttl.high
    ttls = [(f"{owner} {rtype}", value) for owner, rtype, value, _ in reply.answers]
    ttls += [(f"{owner} SOA", value) for owner, value in reply.authority_soa]
    for owner, value in dict(ttls).items():
        if not ttl.low <= value <= high:
            differences.append(("TTL out of range", f"{owner} {value}, not in {ttl.low}-{high}", "RFC 2181 8"))
    rrsets: dict[str, set[int]] = {}
    for owner, value in ttls:
        rrsets.setdefault(owner, set()).add(value)
    differences += [("TTLs differ in an RRset", f"{owner} {sorted(values)}", "RFC 2181 5.2")
                    for owner, values in rrsets.items() if len(values) > 1]
    return differences


def _match(check: Check, reply: Reply) -> tuple[list[str], list[str]]:
    """The expected records the reply lacks and the records it has beyond them, as `<type> <data>`."""
    actual = [(owner, rtype, data) for owner, rtype, _, data in reply.answers]
    actual = list(dict.fromkeys(actual))
    missing = []
    for expected in sorted(check.answers, key=lambda data: ANY_LABEL in data):  # exact ones first
        pattern = _pattern(expected)
        hit = next((record for record in actual if record[0] == check.name and record[1] == check.qtype
                    and pattern.fullmatch(record[2])), None)
        if hit is None:
            missing.append(f"{check.qtype} {expected}")
        else:
            actual.remove(hit)
    extra = [f"{rtype} {data}" if owner == check.name else f"{owner} {rtype} {data}" for owner, rtype, data in actual]
    return missing, extra


@cache
def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile("[^.]+".join(re.escape(part) for part in expected.split(ANY_LABEL)))


def _summary(reply: Reply) -> str:
    return f"{reply.rcode} {len(reply.records)} records"
