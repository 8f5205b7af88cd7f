"""A rewritten question asked upstream, and the upstream's reply written back for the client (pure).

`Rewritten` is the `protocol.answer.Relay` a FORWARD or CHASE answer carries: the router asks
upstream (and the forward cache) for the rewritten question's key, with the EDNS options the
edns0 rules made, so every name rewritten to the same question and options shares one cache
entry, and hands each reply to `restore`.  A reply to a question whose options alone were
rewritten only gets the client's ID and question.  The reply is parsed and
written again (dnslib): the client's question as asked in place of the rewritten one (its length
may differ, so the records' compression pointers cannot be kept), the response rules applied to
every record, the client's ID, cut to the client's size.  TTL rules leave the OPT record alone
(CoreDNS applies them to its TTL field, which holds the extended rcode and flags).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, NamedTuple

from dnslib import RD, DNSError, DNSLabel, DNSQuestion, DNSRecord
from dnslib.label import DNSLabelError

from dns_server.plugins.forward.upstreams import NoAnswer
from dns_server.plugins.rewrite.rules import DNAME, NAPTR, Reverse
from dns_server.protocol.codes import CNAME, MX, NS, OPT, PTR, SOA, SRV
from dns_server.protocol.encode import fit
from dns_server.protocol.wire import HEADER_LEN, edns_options, with_options

_TYPE_CLASS = struct.Struct("!HH")
_VALUE_FIELDS = {CNAME: "label", NS: "label", PTR: "label", MX: "label", SRV: "target", SOA: "mname",
                 NAPTR: "replacement"}  # the name `answer value` rewrites, as dnslib calls it (DNAME: raw data)


class Rewritten(NamedTuple):
    """The question asked upstream instead of the client's, and the response rules that write its reply back."""

    name: str  # lower case, no trailing dot
    wire: bytes  # the name in wire form
    qtype: int
    qclass: int
    reverse: Reverse
    options: bytes = b""  # the EDNS options asked upstream with it (edns0 rules)
    codes: frozenset[int] = frozenset()  # the option codes the edns0 rules read from the query

    def key(self, client_key: bytes) -> bytes:
        return with_options(self.wire + _TYPE_CLASS.pack(self.qtype, self.qclass) + client_key[-1:], self.options)

    def fits(self, options: bytes) -> bool:
        return not self.codes or all(code not in self.codes for code, _ in edns_options(options))

    def restore(self, reply: bytes, head: bytes, question: bytes, limit: int) -> bytes:
        if not any(self.reverse) and question[:-4].lower() == self.wire \
                and question[-4:] == _TYPE_CLASS.pack(self.qtype, self.qclass):  # only the options were rewritten
            return fit(head + reply[2:HEADER_LEN] + question + reply[HEADER_LEN + len(question):], limit)
        try:
            message = DNSRecord.parse(reply)
        except (DNSError, ValueError, IndexError, struct.error) as error:
            raise NoAnswer(f"unreadable reply from upstream: {error}") from None
        qname = _labels(question, 0)
        qtype, qclass = _TYPE_CLASS.unpack_from(question, len(question) - 4)
        message.questions = [DNSQuestion(DNSLabel(qname), qtype, qclass)]
        records = 0
        for section in (message.auth, message.rr, message.ar):
            for rr in section:
                records += 1
                if rr.rtype != OPT:
                    self._record(rr)
        opt = next((rr for rr in message.ar if rr.rtype == OPT), None)
        if self.reverse.rcodes:
            rcode = message.header.rcode | ((opt.ttl >> 24) << 4 if opt is not None else 0)
            rewritten = self.reverse.rcode(rcode, records)
            if rewritten != rcode:
                message.header.rcode = rewritten
                if opt is not None:
                    opt.ttl &= 0x00FFFFFF
        try:
            wire = bytes(message.pack())
        except (DNSError, DNSLabelError, ValueError, struct.error) as error:  # a name too long once written back
            raise NoAnswer(f"cannot write the upstream's reply back: {error}") from None
        return fit(head + wire[2:], limit)

    def _record(self, rr: Any) -> None:
        """One dnslib record (rname, rtype, ttl, rdata) written back in place."""
        reverse = self.reverse
        if reverse.owners:
            rr.rname = _written(rr.rname, reverse.owner)
        if reverse.values:
            field = _VALUE_FIELDS.get(rr.rtype)
            if field is not None and hasattr(rr.rdata, field):
                setattr(rr.rdata, field, _written(getattr(rr.rdata, field), reverse.value))
            elif rr.rtype == DNAME and isinstance(rr.rdata, RD):
                target = _dname_target(rr.rdata.data)
                if target is not None:
                    rr.rdata.data = _wire(_written(DNSLabel(target), reverse.value).label)
        rr.ttl = reverse.ttl(rr.ttl)


def _text(label: DNSLabel) -> str:
    return "".join(part.decode("latin-1") + "." for part in label.label) or "."


def _written(label: DNSLabel, rewrite: Callable[[str], str]) -> DNSLabel:
    """A name passed through a rewriter (of fully qualified text), as dnslib keeps it."""
    text = _text(label)
    after = rewrite(text)
    if after == text:
        return label
    return DNSLabel([part.encode("latin-1") for part in after.rstrip(".").split(".")] if after != "." else [])


def _labels(wire: bytes, at: int) -> list[bytes]:
    """The labels of an uncompressed wire name starting at `at` (a question's)."""
    labels = []
    while wire[at]:
        labels.append(wire[at + 1:at + 1 + wire[at]])
        at += wire[at] + 1
    return labels


def _dname_target(data: bytes) -> list[bytes] | None:
    """A DNAME's target (RFC 6672 2.5: sent uncompressed), None if it is not one whole name."""
    at = 0
    labels = []
    while at < len(data) and data[at] and not data[at] & 0xC0:
        labels.append(data[at + 1:at + 1 + data[at]])
        at += data[at] + 1
    return labels if at == len(data) - 1 and data[at] == 0 else None


def _wire(labels: tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
