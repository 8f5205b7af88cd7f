"""An ExternalName's CNAME followed outside the cluster: the target's records come from upstream.

The kubernetes plugin answers `Outcome.CHASE` (its CNAME, and the target to chase); the router asks
the block's outbound side for the target under `target_key` and hands the reply to `joined`, which
makes the one answer a client gets, as CoreDNS's kubernetes plugin does with its `upstream`.
"""

from __future__ import annotations

from dnslib import DNSRecord

from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.encode import encode, fit
from dns_server.protocol.wire import HEADER_LEN, Query, name_to_wire, skip_name


def target_key(key: bytes, target: str) -> bytes:
    """The question key for the target: the query's type, class, mode (and options), the target's name."""
    return name_to_wire(target) + key[skip_name(key, 0):]


def joined(query: Query, answer: Answer, target: bytes, bufsize: int, limit: int) -> bytes:
    """The CNAME followed by the target's records from upstream (`target`, a reply), cut to `limit`."""
    ours = DNSRecord.parse(encode(query, Answer(Outcome.ANSWER, answer.answer), bufsize).wire)
    upstream = DNSRecord.parse(target)
    ours.header.aa = 0  # part of the answer is not ours (RFC 1035 4.1.1)
    ours.header.rcode = upstream.header.rcode
    ours.rr.extend(upstream.rr)
    if not upstream.rr:
        ours.auth.extend(upstream.auth)  # the target's SOA, for negative caching (RFC 2308 3)
    wire = fit(bytes(ours.pack()), limit)
    end = HEADER_LEN + len(query.question)
    return wire[:HEADER_LEN] + query.question + wire[end:]
