"""Reading dnspython replies in integration tests: the parts a test compares, as plain text."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype


def rcode(reply: dns.message.Message) -> str:
    """The reply's rcode mnemonic: `NOERROR`, `NXDOMAIN`, ..."""
    return dns.rcode.to_text(reply.rcode())


def values(reply: dns.message.Message, qtype: str = "A", section: str = "answer") -> list[str]:
    """The data of the section's records of one type, in the order they came."""
    rdtype = dns.rdatatype.from_text(qtype)
    return [rr.to_text() for rrset in getattr(reply, section) if rrset.rdtype == rdtype for rr in rrset]


def owners(reply: dns.message.Message, section: str = "answer") -> list[str]:
    """The owner names of the section's records (lower case, fully qualified), one per record."""
    return [rrset.name.to_text().lower() for rrset in getattr(reply, section) for _ in rrset]


def ttls(reply: dns.message.Message, section: str = "answer") -> set[int]:
    return {rrset.ttl for rrset in getattr(reply, section)}


def outcome(reply: dns.message.Message, qtype: str = "A") -> list[str]:
    """The data of the answer's records of one type, or, when there are none, the rcode alone."""
    return values(reply, qtype) or [rcode(reply)]
