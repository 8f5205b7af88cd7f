"""`rewrite cname`: the target of a reply's CNAME replaced, and the new target looked up again (pure).

CoreDNS 1.14's cname_target.go: the rule applies to every question (so a `stop` rule ends the
list) and adds a response rule.  In the reply, the first CNAME of the answer section whose target
a rule matches (the rules of one question tried last collected first) gets the new target; the
CNAMEs before it stay, everything after it is dropped, and the answer records of the new target's
reply take its place, with that reply's TC bit.  The router asks the whole server for the new
target (`protocol.answer.Follow`), in class IN, with the type the rules left.  The header, the
authority and additional sections stay.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple, Optional

from dnslib import DNSError, DNSLabel, DNSRecord

from dns_server.plugins.rewrite.rules import EXACT, PREFIX, SUBSTRING, SUFFIX, substitute
from dns_server.protocol.codes import CNAME


class CnameRule(NamedTuple):
    """`cname [TYPE] FROM TO`: FROM and TO lower case (fully qualified for exact), `pattern` for regex."""

    mode: str
    kind: str
    source: str
    to: str
    pattern: Optional[re.Pattern[str]] = None

    def retarget(self, target: str) -> Optional[str]:
        """The new target for a CNAME target (fully qualified, as the reply has it), None if it does not match."""
        kind, source = self.kind, self.source
        if kind == EXACT:
            return self.to if target == source else None
        if kind == PREFIX:
            return self.to + target[len(source):] if target.startswith(source) else None
        if kind == SUFFIX:
            return target[:len(target) - len(source)] + self.to if target.endswith(source) else None
        if kind == SUBSTRING:
            return target.replace(source, self.to) if source in target else None
        assert self.pattern is not None
        found = self.pattern.search(target)
        return None if found is None else substitute(self.to, found)


class Retarget(NamedTuple):
    """The cname rules collected for one question (last collected first): the `protocol.answer.Follow`."""

    rules: tuple[CnameRule, ...]
    qtype: int  # the question's type after the rules: the new target's

    def target(self, reply: bytes) -> Optional[str]:
        found = self._found(_parsed(reply))
        return None if found is None else found[1].rstrip(".").lower()

    def join(self, reply: bytes, looked_up: bytes) -> bytes:
        message = _parsed(reply)
        found = self._found(message)
        target = _parsed(looked_up)
        if found is None or message is None or target is None:
            return reply
        index, new = found
        kept = [rr for rr in message.rr[:index + 1] if rr.rtype == CNAME]
        kept[-1].rdata.label = DNSLabel(new)
        message.rr = kept + target.rr
        message.header.tc = target.header.tc
        return bytes(message.pack())

    def _found(self, message: Optional[DNSRecord]) -> Optional[tuple[int, str]]:
        """The first CNAME of the answer a rule retargets: its index and new target."""
        if message is None:
            return None
        for index, rr in enumerate(message.rr):
            if rr.rtype == CNAME:
                new = self._new(str(rr.rdata.label))
                if new is not None:
                    return index, new
        return None

    def _new(self, target: str) -> Optional[str]:
        for rule in self.rules:
            new = rule.retarget(target)
            if new is not None:
                return new
        return None


def _parsed(reply: bytes) -> Optional[DNSRecord]:
    try:
        return DNSRecord.parse(reply)
    except (DNSError, ValueError, IndexError, struct.error):
        return None
