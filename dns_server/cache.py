"""The forwarding cache: upstream replies kept as bytes and served with their TTLs counted down.

Pure: no clock, no I/O; every call that needs the time takes `now` (monotonic seconds).

Theory of operation.  A reply the forwarder accepted is parsed once, here, when it is stored
(`prepare`): its ID is zeroed, AA cleared (the answer is not ours), its OPT record replaced by our
own (OPT is hop-by-hop, RFC 6891 6.1.1: our buffer size, the query's DO bit, no options; none when
the query had none), and the offset of every TTL field noted.  Serving a hit then costs a dict lookup and, at most once per second of age, a
copy with those TTL fields rewritten; the pipeline patches in the client's ID and question case.

Rules this module keeps:
- The key is the pipeline's question key: the lower-cased question plus a mode byte (RD, CD,
  EDNS present, DO).  Replies differ in each of these, so a reply is served only to queries that
  would have received the same one.
- How long an entry lives (RFC 2308, CoreDNS's cache plugin):
  positive (NOERROR with answers): the smallest TTL in the reply, at most 3600 s;
  negative (NXDOMAIN, or NOERROR without answers) with an SOA in the authority section:
  min(SOA TTL, SOA MINIMUM) (RFC 2308 5), at most 1800 s;
  SERVFAIL: 5 s; every entry at least 5 s.
- Not cached: truncated replies, negative replies without an SOA (RFC 2308 5), other rcodes.
- Served TTLs are min(TTL, lifetime) minus the entry's age, never below 0; an answer served stale
  (after expiry, within the serve-stale window) carries TTL 30 (RFC 8767 4).
- Eviction is LRU over a bounded number of entries (cachetools.LRUCache); an expired entry is
  dropped when it is next looked up past its serve-stale window, or when the LRU evicts it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cachetools import LRUCache

from dns_server.wire import HEADER_LEN, MODE_DO, MODE_EDNS, OPT, FormErr, skip_name

MAX_POSITIVE_TTL = 3600  # CoreDNS cache: success TTL cap
MAX_NEGATIVE_TTL = 1800  # CoreDNS cache: denial TTL cap
MIN_TTL = 5  # CoreDNS cache: MINTTL default, for every kind of entry
SERVFAIL_TTL = 5  # CoreDNS cache: `servfail` default
STALE_TTL = 30  # RFC 8767 4: the TTL of an answer served stale
PREFETCH_HITS = 2  # hits without a gap of PREFETCH_GAP that make an entry popular
PREFETCH_GAP = 60.0  # CoreDNS cache: prefetch DURATION default
PREFETCH_FRACTION = 0.1  # CoreDNS cache: prefetch when 10% of the lifetime is left ...
PREFETCH_LAST = 1.0  # ... or, at the latest, 1 s before expiry

NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
SOA = 6
_AA, _TC = 0x04, 0x02
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_COUNTS = struct.Struct("!HHHH")
_SECTION_COUNTS = struct.Struct("!HHH")  # answer, authority, additional
_OPT_FIXED = struct.Struct("!BHHBBHH")  # root name, type, UDP size, extended RCODE, version, flags, rdlength


class BadReply(ValueError):
    """An upstream reply that cannot be parsed: it is treated like no reply at all."""


@dataclass(slots=True)
class Entry:
    """One upstream reply, normalised, with what is needed to serve it at any age."""

    reply: bytes  # ID 0, AA clear, our OPT
    ttls: tuple[tuple[int, int], ...]  # (offset of a TTL field, the TTL served at age 0)
    truncated: bytes  # header with TC, question, OPT: for a UDP client the reply does not fit
    stored: float
    lifetime: int  # seconds; 0: not cacheable
    hits: int = 0  # hits with no gap of PREFETCH_GAP between them (counted only with prefetch on)
    last_hit: float = 0.0
    refreshing: bool = False  # a prefetch is under way
    _age: int = field(default=-1, init=False, repr=False)  # the age `_aged` was rendered for
    _aged: bytes = field(default=b"", init=False, repr=False)

    @property
    def expires(self) -> float:
        return self.stored + self.lifetime

    def render(self, now: float, limit: int, stale: bool = False) -> bytes:
        """The reply as it should be sent at `now` to a client that accepts `limit` bytes."""
        if len(self.reply) > limit:
            return self.truncated
        if stale:
            return self._aged_by(None)
        age = max(int(now - self.stored), 0)
        if age != self._age:
            self._aged = self._aged_by(age)
            self._age = age
        return self._aged

    def _aged_by(self, age: int | None) -> bytes:
        """The reply with every TTL counted down by `age` seconds (None: served stale)."""
        if not self.ttls:
            return self.reply
        out = bytearray(self.reply)
        for offset, ttl in self.ttls:
            _U32.pack_into(out, offset, min(ttl, STALE_TTL) if age is None else max(ttl - age, 0))
        return bytes(out)


@dataclass(slots=True)
class ForwardCache:
    """Upstream replies by question key, at most `size` of them, least recently used evicted first."""

    size: int
    max_payload: int  # the UDP size we announce in the OPT records we serve
    serve_stale: float = 0.0  # seconds past expiry an entry may still be served when upstreams fail
    prefetch: bool = False
    _entries: LRUCache[bytes, Entry] = field(init=False)

    def __post_init__(self) -> None:
        self._entries = LRUCache(maxsize=max(self.size, 1))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> Entry | None:
        """The entry for `key` if it has not expired (counted as a hit)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            if now >= entry.expires + self.serve_stale:
                del self._entries[key]
            return None
        if self.prefetch:
            if now - entry.last_hit >= PREFETCH_GAP:
                entry.hits = 0
            entry.hits += 1
            entry.last_hit = now
        return entry

    def stale(self, key: bytes, now: float) -> Entry | None:
        """An expired entry for `key` still inside the serve-stale window (RFC 8767), if any."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now < entry.expires + self.serve_stale:
            return entry
        return None

    def wants_prefetch(self, entry: Entry, now: float) -> bool:
        """Whether a popular entry is close enough to expiry to be refreshed now (CoreDNS prefetch)."""
        if not self.prefetch or entry.refreshing or entry.hits < PREFETCH_HITS:
            return False
        return entry.expires - now <= max(entry.lifetime * PREFETCH_FRACTION, PREFETCH_LAST)

    def store(self, key: bytes, reply: bytes, now: float) -> Entry:
        """Parse and normalise an upstream reply; keep it when it may be cached.  Raises BadReply."""
        entry = prepare(reply, now, self.max_payload, key[-1])
        if entry.lifetime and self.size:
            self._entries[key] = entry
        return entry


def prepare(reply: bytes, now: float, max_payload: int, mode: int) -> Entry:
    """An Entry for an upstream reply to a query of this mode (lifetime 0: not cacheable).  Raises BadReply.

    The reply gets an OPT record exactly when the query had one (RFC 6891 7), whatever the
    upstream did.
    """
    try:
        return _prepare(reply, now, max_payload, mode)
    except (FormErr, struct.error, IndexError) as error:
        raise BadReply(str(error)) from None


def _prepare(reply: bytes, now: float, max_payload: int, mode: int) -> Entry:
    if len(reply) < HEADER_LEN:
        raise BadReply("shorter than a header")
    qdcount, ancount, nscount, arcount = _COUNTS.unpack_from(reply, 4)
    if qdcount != 1:
        raise BadReply("QDCOUNT is not 1")
    question_end = skip_name(reply, HEADER_LEN) + 4
    if question_end > len(reply):
        raise BadReply("the question runs past the end")
    ttl_fields: list[tuple[int, int]] = []  # (offset, TTL) of every record but the OPT
    soa: tuple[int, int] | None = None  # (TTL, MINIMUM) of an SOA in the authority section
    opt_at = opt_end = 0  # where the upstream's OPT record starts and ends, if it sent one
    ext_rcode = 0
    i = question_end
    for n in range(ancount + nscount + arcount):
        start = i
        i = skip_name(reply, i)
        rtype, _, ttl, rdlength = _RR_FIXED.unpack_from(reply, i)
        ttl_at = i + 4
        i += 10 + rdlength
        if i > len(reply):
            raise BadReply("a record runs past the end")
        if rtype == OPT:
            if n < ancount + nscount or opt_end or reply[start] != 0:
                raise BadReply("a misplaced, repeated or non-root OPT record")  # RFC 6891 6.1.1
            opt_at, opt_end = start, i
            ext_rcode = reply[ttl_at]
            continue
        if ttl & 0x80000000:
            ttl = 0  # RFC 2181 8: a TTL with the top bit set is zero
        if rtype == SOA and ancount <= n < ancount + nscount and rdlength >= 22:
            soa = (ttl, _U32.unpack_from(reply, i - 4)[0])
        ttl_fields.append((ttl_at, ttl))
    if not opt_end:
        opt_at = opt_end = i  # ours goes at the end

    edns = bool(mode & (MODE_EDNS | MODE_DO))
    our_opt = _OPT_FIXED.pack(0, OPT, max_payload, ext_rcode, 0, 0x8000 if mode & MODE_DO else 0, 0) if edns else b""
    header = bytearray(reply[:HEADER_LEN])
    header[0:2] = b"\x00\x00"
    header[2] &= ~_AA & 0xFF
    header[10:12] = _U16.pack(arcount - (opt_end > opt_at) + bool(our_opt))
    # anything after the last record is dropped
    body = reply[HEADER_LEN:opt_at] + our_opt + reply[opt_end:i]
    shift = len(our_opt) - (opt_end - opt_at)

    rcode = (reply[3] & 0x0F) | ext_rcode << 4
    lifetime = _lifetime(rcode, bool(reply[2] & _TC), ancount, soa, [ttl for _, ttl in ttl_fields])
    ttls = tuple((at + shift if at > opt_at else at, min(ttl, lifetime) if lifetime else ttl)
                 for at, ttl in ttl_fields)
    truncated = bytearray(header)
    truncated[2] |= _TC
    truncated[6:12] = _SECTION_COUNTS.pack(0, 0, 1 if our_opt else 0)
    truncated += reply[HEADER_LEN:question_end] + our_opt
    return Entry(bytes(header) + body, ttls, bytes(truncated), now, lifetime)


def _lifetime(rcode: int, truncated: bool, ancount: int, soa: tuple[int, int] | None, ttls: list[int]) -> int:
    """Seconds to keep a reply (0: do not cache it), by the rules in the module docstring."""
    if truncated:
        return 0
    if rcode == SERVFAIL:
        return SERVFAIL_TTL
    if rcode == NOERROR and ancount:
        return max(min(min(ttls), MAX_POSITIVE_TTL), MIN_TTL)
    if rcode in (NOERROR, NXDOMAIN) and soa is not None:
        negative = min(soa)  # RFC 2308 5: min(SOA TTL, SOA MINIMUM)
        return max(min(negative, MAX_NEGATIVE_TTL), MIN_TTL)
    return 0
