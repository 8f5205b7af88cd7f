"""What the resolver decides: an `Answer` value, which the encoder turns into a reply.

The outcome names every way a question can end; the encoder derives the rcode and the AA bit from
it, so an answer cannot say two contradictory things.  Answers and records are NamedTuples: as
immutable as frozen dataclasses, and made in a fifth of the time on the path of every fresh answer.  Records are plain values (owner names lower
case, without the trailing dot).  `depends` lists what the answer was read from, so the answer
table knows which cached replies a change of the cluster invalidates (`snapshot.invalidated`).
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional, Protocol, Union

from dns_server.protocol.codes import CLASS_IN, NOERROR, NXDOMAIN, REFUSED, SERVFAIL

SrvData = tuple[int, int, int, str]  # priority, weight, port, target
SoaData = tuple[str, str, int, int, int, int, int]  # mname, rname, serial, refresh, retry, expire, minimum
RData = Union[str, SrvData, SoaData, bytes]
Dependency = tuple[str, ...]  # see snapshot.py: ("service", ns, name), ("namespace", ns), ...
# A plugin's own counter that a reply adds one to: the family's name, then its label values after `server`
# (the zone first; `view` goes after it), e.g. ("coredns_template_matches_total", "example.org.", "IN", "A").
Count = tuple[str, ...]


class RR(NamedTuple):
    """One resource record (of the answer's `record_class`): names are lower case, without the trailing dot."""

    name: str
    rtype: int
    ttl: int
    # A/AAAA: address; CNAME/NS/PTR: name; TXT: text; SRV: SrvData; SOA: SoaData;
    # bytes (any type but A): the RDATA in wire form, written as it is (the template plugin's records)
    data: RData


class Outcome(enum.Enum):
    """How a question ends, with the rcode and AA bit that follow from it."""

    ANSWER = ("answer", NOERROR, True)  # NOERROR with records (after a CNAME, the rcode may be the target's)
    NOT_AUTHORITATIVE = ("answer, not authoritative", NOERROR, False)  # NOERROR without AA (chaos)
    NODATA = ("nodata", NOERROR, True)  # the name exists without records of the type; SOA in authority
    NXDOMAIN = ("nxdomain", NXDOMAIN, True)  # the name does not exist; SOA in authority
    NOT_READY = ("not ready", SERVFAIL, False)  # would be NXDOMAIN, but the cluster has not been read yet
    SERVFAIL = ("servfail", SERVFAIL, False)  # nothing can answer (no plugin for the name, a CNAME chain too long)
    REFUSED = ("refused", REFUSED, False)  # not offered (zone transfers, a class other than IN)
    FORWARD = ("forward", NOERROR, False)  # not ours: `forward` names the forward directive that sends it upstream
    CHASE = ("chase", NOERROR, True)  # `answer` ends in a CNAME to `chase`, outside: append the upstream's records

    def __init__(self, label: str, rcode: int, authoritative: bool) -> None:
        self.label = label
        self.rcode = rcode
        self.authoritative = authoritative


class Relay(Protocol):
    """A question asked upstream in place of the client's, and its reply made the client's (rewrite).

    A FORWARD or CHASE answer carries one when a plugin before `forward` rewrote the question: the
    router asks upstream for `key(client_key)` (a CHASE target under that key's type, class and
    mode) and passes each reply it relays through `restore`, the one place the reply is made again.
    """

    @property
    def name(self) -> str:
        """The name asked upstream (lower case, no trailing dot)."""
        ...

    def key(self, client_key: bytes) -> bytes:
        """The question key asked upstream, from the client's question key (its mode byte kept)."""
        ...

    def fits(self, options: bytes) -> bool:
        """Whether a query with these EDNS options (its OPT record's RDATA) is asked upstream as the
        query this relay was made for (the table keeps the relay for its question key)."""
        ...

    def restore(self, reply: bytes, head: bytes, question: bytes, limit: int) -> bytes:
        """A reply from upstream (or one the router made) with the client's ID (`head`, two bytes) and
        question (as asked), its records written back, cut to `limit` bytes."""
        ...


class Follow(Protocol):
    """A reply whose CNAME target is replaced and looked up again through the server (rewrite cname).

    The router hands it every reply of the answer that carries it; when `target` names a new target,
    it asks the whole server (any block, its rewrite rules again) for it and `join`s the two.
    """

    @property
    def qtype(self) -> int:
        """The type the new target is asked for (in class IN)."""
        ...

    def target(self, reply: bytes) -> Optional[str]:
        """The new target (lower case, no trailing dot) of the reply's CNAME, None when no rule matches."""
        ...

    def join(self, reply: bytes, looked_up: bytes) -> bytes:
        """The reply up to its retargeted CNAME, then the answer records of the new target's reply."""
        ...


class Answer(NamedTuple):
    outcome: Outcome
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    forward: int = -1  # FORWARD and CHASE: which of the block's `forward` directives (-1: none)
    chase: str = ""  # CHASE: the CNAME target whose records come from upstream
    plugin: str = ""  # the plugin that answered ("kubernetes", "hosts"); "" when the server did
    reason: str = ""  # SERVFAIL: why, for the errors plugin; NXDOMAIN: why the name is missing (explain shows it)
    depends: frozenset[Dependency] = frozenset()
    rotations: tuple[tuple[RR, ...], ...] = ()  # loadbalance: the answer section in other orders, one per reply
    record_class: int = CLASS_IN  # the class of every record (chaos and whoami answer in the question's)
    set_rcode: int = -1  # rewrite: the rcode the reply carries instead of the outcome's (-1: the outcome's)
    relay: Optional[Relay] = None  # FORWARD and CHASE: the rewritten question asked upstream (rewrite)
    counts: tuple[Count, ...] = ()  # the plugins' counters each reply of this answer adds one to (template)
    follow: Optional[Follow] = None  # rewrite cname: its CNAME target replaced and looked up again (never kept)

    @property
    def rcode(self) -> int:
        """The rcode of the reply; after a CNAME chain, the rcode the chain's end gave."""
        return self.outcome.rcode if self.set_rcode < 0 else self.set_rcode


REFUSE = Answer(Outcome.REFUSED)
