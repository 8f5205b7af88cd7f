"""The `cache` plugin for forwarded answers: upstream replies kept as bytes, TTLs counted down.

Pure: no clock, no I/O; every call that needs the time takes `now` (monotonic seconds).  Cluster
and hosts answers never come from here: they are always the current snapshot's (answer_table.py).

Theory of operation.  A reply from upstream is parsed once (`prepare`): its ID zeroed, AA cleared
(the answer is not ours), its OPT record replaced by our own (OPT is hop-by-hop, RFC 6891 6.1.1:
our buffer size, the query's DO bit, no options; none when the query had none), and the offset of
every TTL field noted.  A reply whose client-subnet option has a scope (RFC 7871: it holds for that
client only) is marked `scoped`, and the outbound side never keeps it.  Serving a hit then costs a
dict lookup and, at most once per second of age, a copy with those TTL fields rewritten; the
pipeline patches in the client's ID and question case.

Rules this module keeps (CoreDNS's cache plugin; RFC 2308):
- The key is the pipeline's question key: the lower-cased question plus a mode byte (RD, CD,
  EDNS present, DO).  Replies differ in each of these, so a reply is served only to queries that
  would have received the same one.
- Success (NOERROR with answers) lives for the smallest TTL in the reply; denial (NXDOMAIN, or
  NOERROR without answers, with an SOA in the authority section) for min(SOA TTL, SOA MINIMUM)
  (RFC 2308 5); each capped by its maximum TTL and raised to its minimum TTL; SERVFAIL lives for
  the `servfail` duration, in the denial cache.  Not cached: truncated replies, negative replies
  without an SOA, other rcodes, and names outside the cache's zones or in a `disable`d zone.
- Served TTLs are min(TTL, lifetime) minus the entry's age, never below 0 (with `keepttl`, never
  counted down); an answer served stale (after expiry, within the `serve_stale` window) carries
  TTL 0, as CoreDNS serves it.
- Success and denial entries are kept in two LRU caches of their own capacities
  (cachetools.LRUCache); an expired entry is dropped when it is next looked up past its serve-stale
  window, or when its LRU evicts it.
- Prefetch: an entry asked for `prefetch_amount` times with no gap of `prefetch_duration` is
  refreshed once less than `prefetch_percentage` of its lifetime is left, or 1 s before expiry.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field
from typing import Sequence

from cachetools import LRUCache

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext, last
from dns_server.config.syntax import Directive, Token
from dns_server.protocol import client_subnet
from dns_server.protocol.codes import (
    AA,
    DO,
    NOERROR,
    NXDOMAIN,
    OPT,
    OPT_RECORD,
    SERVFAIL,
    SOA,
    TC,
)
from dns_server.protocol.names import in_zone
from dns_server.protocol.wire import HEADER_LEN, MODE_DO, MODE_EDNS, FormErr, skip_name

PREFETCH_LAST = 1.0  # CoreDNS cache: prefetch 1 s before expiry at the latest
STALE_TTL = 0  # CoreDNS serves stale answers with TTL 0
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_COUNTS = struct.Struct("!HHHH")
_SECTION_COUNTS = struct.Struct("!HHH")  # answer, authority, additional
MIN_PREFETCH_PERCENTAGE, MAX_PREFETCH_PERCENTAGE = 10, 90  # plugin/cache prefetch
DEFAULT_CACHE_CAPACITY = 9984  # cache: 256 shards of 39 entries
MIN_CACHE_CAPACITY = 1024  # cache: the smallest capacity it accepts
MAX_SUCCESS_TTL = 3600  # cache: success TTL cap
MAX_DENIAL_TTL = 1800  # cache: denial TTL cap
DEFAULT_MIN_TTL = 5  # cache: MINTTL of success and denial
DEFAULT_SERVFAIL_TTL = 5.0  # cache `servfail`
MAX_SERVFAIL_TTL = 300.0  # cache: `servfail` at most 5 minutes
DEFAULT_PREFETCH_DURATION = 60.0  # cache `prefetch AMOUNT [DURATION]`
DEFAULT_PREFETCH_PERCENTAGE = 10  # cache `prefetch ... [PERCENTAGE%]`
DEFAULT_SERVE_STALE = 3600.0  # cache `serve_stale [DURATION]`
CACHE_SHARDS = 256  # plugin/pkg/cache: a capacity is rounded down to whole shards


class BadReply(ValueError):
    """An upstream reply that cannot be parsed: it is treated like no reply at all."""


class Kind(enum.Enum):
    """What kind of reply it is, for the cache (CoreDNS's response.Classify)."""

    SUCCESS = "success"
    DENIAL = "denial"
    SERVFAIL = "servfail"
    OTHER = "other"  # never cached


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream reply normalised to be served: ID 0, AA clear, our OPT."""

    wire: bytes
    ttls: tuple[tuple[int, int], ...]  # (offset of a TTL field, the TTL it had)
    truncated: bytes  # header with TC, question, OPT: for a UDP client the reply does not fit
    rcode: int
    kind: Kind
    ttl: int  # success: the smallest TTL; denial: min(SOA TTL, SOA MINIMUM); else 0
    scoped: bool = False  # for one client only: the upstream's client-subnet option had a scope (RFC 7871)


@dataclass(slots=True)
class Entry:
    """One reply in the cache, with what is needed to serve it at any age."""

    reply: Reply
    stored: float
    lifetime: int  # seconds
    keepttl: bool = False
    hits: int = 0  # hits with no gap of the prefetch duration between them (counted only with prefetch)
    last_hit: float = 0.0
    refreshing: bool = False  # a prefetch is under way
    _age: int = field(default=-1, init=False, repr=False)  # the age `_aged` was rendered for
    _aged: bytes = field(default=b"", init=False, repr=False)

    @property
    def expires(self) -> float:
        return self.stored + self.lifetime

    def render(self, now: float, limit: int, stale: bool = False) -> bytes:
        """The reply as it should be sent at `now` to a client that accepts `limit` bytes."""
        reply = self.reply
        if len(reply.wire) > limit:
            return reply.truncated
        if stale:
            return self._aged_by(None)
        age = 0 if self.keepttl else max(int(now - self.stored), 0)
        if age != self._age:
            self._aged = self._aged_by(age)
            self._age = age
        return self._aged

    def _aged_by(self, age: int | None) -> bytes:
        """The reply with every TTL capped by the lifetime and counted down by `age` (None: served stale)."""
        reply = self.reply
        if not reply.ttls:
            return reply.wire
        out = bytearray(reply.wire)
        for offset, ttl in reply.ttls:
            ttl = min(ttl, self.lifetime)
            _U32.pack_into(out, offset, STALE_TTL if age is None else max(ttl - age, 0))
        return bytes(out)


@dataclass(slots=True)
class CacheCounters:
    """What the cache plugin's metrics count: plain ints added to on the event loop, read when scraped."""

    requests: int = 0
    success_hits: int = 0
    denial_hits: int = 0
    misses: int = 0
    prefetches: int = 0
    drops: int = 0  # replies not cached because they are malformed
    served_stale: int = 0
    success_evictions: int = 0
    denial_evictions: int = 0


class _Lru(LRUCache[bytes, Entry]):
    """An LRU cache that counts what it evicts in its owner's counters (read at each eviction: metrics replace them)."""

    def __init__(self, maxsize: int, owner: ForwardCache, kind: Kind) -> None:
        super().__init__(maxsize=maxsize)
        self._owner = owner
        self._kind = kind

    def popitem(self) -> tuple[bytes, Entry]:
        item = super().popitem()
        if self._kind is Kind.SUCCESS:
            self._owner.stats.success_evictions += 1
        else:
            self._owner.stats.denial_evictions += 1
        return item


class ForwardCache:
    """Upstream replies by question key, in a success and a denial LRU (CoreDNS's two caches).

    `stats` may be replaced (by the metrics' counters for this cache's labels); everything counts into
    the current one.
    """

    def __init__(self, settings: CacheSettings, zones: tuple[str, ...]) -> None:
        self.settings = settings
        self.zones = settings.zones or zones  # names outside these are not cached
        self.stats = CacheCounters()
        self._success = _Lru(settings.success_capacity, self, Kind.SUCCESS)
        self._denial = _Lru(settings.denial_capacity, self, Kind.DENIAL)

    @property
    def prefetch(self) -> bool:
        return self.settings.prefetch_amount > 0

    @property
    def serve_stale(self) -> float:
        return self.settings.serve_stale

    def entries(self, kind: Kind) -> int:
        return len(self._success if kind is Kind.SUCCESS else self._denial)

    def get(self, key: bytes, now: float) -> Entry | None:
        """The entry for `key` if it has not expired (counted as a request, and a hit or a miss)."""
        self.stats.requests += 1
        entry = self._success.get(key)
        lru = self._success
        if entry is None:
            entry = self._denial.get(key)
            lru = self._denial
        if entry is None or now >= entry.expires:
            if entry is not None and now >= entry.expires + self.settings.serve_stale:
                del lru[key]
            self.stats.misses += 1
            return None
        if entry.reply.kind is Kind.SUCCESS:
            self.stats.success_hits += 1
        else:
            self.stats.denial_hits += 1
        if self.prefetch:
            if now - entry.last_hit >= self.settings.prefetch_duration:
                entry.hits = 0
            entry.hits += 1
            entry.last_hit = now
        return entry

    def stale(self, key: bytes, now: float) -> Entry | None:
        """An expired entry for `key` still inside the serve-stale window (RFC 8767), if any."""
        entry = self._success.get(key) or self._denial.get(key)
        if entry is not None and entry.expires <= now < entry.expires + self.settings.serve_stale:
            return entry
        return None

    def wants_prefetch(self, entry: Entry, now: float) -> bool:
        """Whether a popular entry is close enough to expiry to be refreshed now (CoreDNS prefetch)."""
        if not self.prefetch or entry.refreshing or entry.hits < self.settings.prefetch_amount:
            return False
        left = entry.lifetime * self.settings.prefetch_percentage / 100
        return entry.expires - now <= max(left, PREFETCH_LAST)

    def lifetime(self, reply: Reply, name: str) -> int:
        """Seconds to keep a reply to a question for `name` (0: do not cache it)."""
        settings = self.settings
        if not any(in_zone(name, zone) for zone in self.zones):
            return 0
        if reply.kind is Kind.SUCCESS:
            if _disabled(settings.disable_success, name, self.zones):
                return 0
            return max(min(reply.ttl, settings.success_ttl), settings.success_min_ttl)
        if reply.kind is Kind.DENIAL:
            if _disabled(settings.disable_denial, name, self.zones):
                return 0
            return max(min(reply.ttl, settings.denial_ttl), settings.denial_min_ttl)
        if reply.kind is Kind.SERVFAIL:
            return int(settings.servfail_ttl)
        return 0

    def store(self, key: bytes, name: str, reply: Reply, now: float) -> Entry:
        """An entry for the reply; kept when it may be cached."""
        lifetime = self.lifetime(reply, name)
        entry = Entry(reply, now, lifetime, self.settings.keepttl)
        if lifetime > 0:
            (self._success if reply.kind is Kind.SUCCESS else self._denial)[key] = entry
        return entry


def _disabled(zones: tuple[str, ...] | None, name: str, default: tuple[str, ...]) -> bool:
    if zones is None:
        return False
    return any(in_zone(name, zone) for zone in zones or default)


def uncached(reply: Reply, now: float) -> Entry:
    """An entry for a reply served once, without a cache: its TTLs as upstream gave them."""
    return Entry(reply, now, max(reply.ttl, max((ttl for _, ttl in reply.ttls), default=0)))


def prepare(reply: bytes, bufsize: int, mode: int) -> Reply:
    """Normalise an upstream reply to a query of this mode.  Raises BadReply.

    The reply gets an OPT record exactly when the query had one (RFC 6891 7), whatever the
    upstream did.
    """
    try:
        return _prepare(reply, bufsize, mode)
    except (FormErr, struct.error, IndexError) as error:
        raise BadReply(str(error)) from None


def _prepare(reply: bytes, bufsize: int, mode: int) -> Reply:
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
    our_opt = OPT_RECORD.pack(0, OPT, bufsize, ext_rcode, 0, DO if mode & MODE_DO else 0, 0) if edns else b""
    header = bytearray(reply[:HEADER_LEN])
    header[0:2] = b"\x00\x00"
    header[2] &= ~AA & 0xFF
    header[10:12] = _U16.pack(arcount - (opt_end > opt_at) + bool(our_opt))
    # anything after the last record is dropped
    body = reply[HEADER_LEN:opt_at] + our_opt + reply[opt_end:i]
    shift = len(our_opt) - (opt_end - opt_at)

    rcode = (reply[3] & 0x0F) | ext_rcode << 4
    kind, ttl = _classify(rcode, bool(reply[2] & TC), ancount, soa, [ttl for _, ttl in ttl_fields])
    ttls = tuple((at + shift if at > opt_at else at, ttl_value) for at, ttl_value in ttl_fields)
    truncated = bytearray(header)
    truncated[2] |= TC
    truncated[6:12] = _SECTION_COUNTS.pack(0, 0, 1 if our_opt else 0)
    truncated += reply[HEADER_LEN:question_end] + our_opt
    scoped = opt_end > opt_at and client_subnet.scope(reply[opt_at + OPT_RECORD.size:opt_end]) > 0
    return Reply(bytes(header) + body, ttls, bytes(truncated), rcode, kind, ttl, scoped)


def _classify(rcode: int, truncated: bool, ancount: int, soa: tuple[int, int] | None,
              ttls: list[int]) -> tuple[Kind, int]:
    """The reply's kind and the TTL its cache lifetime starts from, by the rules in the module docstring."""
    if truncated:
        return Kind.OTHER, 0
    if rcode == SERVFAIL:
        return Kind.SERVFAIL, 0
    if rcode == NOERROR and ancount:
        return Kind.SUCCESS, min(ttls)
    if rcode in (NOERROR, NXDOMAIN) and soa is not None:
        return Kind.DENIAL, min(soa)  # RFC 2308 5: min(SOA TTL, SOA MINIMUM)
    return Kind.OTHER, 0


# --- the directive ---

@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The `cache` plugin.  Cluster answers are always the current snapshot's; this caches forwarded ones."""

    zones: tuple[str, ...] = ()  # (): the block's zones
    success_capacity: int = DEFAULT_CACHE_CAPACITY
    success_ttl: int = MAX_SUCCESS_TTL
    success_min_ttl: int = DEFAULT_MIN_TTL
    denial_capacity: int = DEFAULT_CACHE_CAPACITY
    denial_ttl: int = MAX_DENIAL_TTL
    denial_min_ttl: int = DEFAULT_MIN_TTL
    prefetch_amount: int = 0  # 0: no prefetch
    prefetch_duration: float = DEFAULT_PREFETCH_DURATION
    prefetch_percentage: int = DEFAULT_PREFETCH_PERCENTAGE
    serve_stale: float = 0.0  # seconds past expiry; 0: off
    serve_stale_verify: bool = False  # REFRESH_MODE `verify` (else `immediate`)
    servfail_ttl: float = DEFAULT_SERVFAIL_TTL
    disable_success: tuple[str, ...] | None = None  # `disable success [ZONES]`; (): every zone
    disable_denial: tuple[str, ...] | None = None
    keepttl: bool = False


def setup(found: Sequence[Directive], context: SetupContext) -> CacheSettings:
    plugin = Reader("cache")
    directive = plugin.once(found)
    args = list(directive.args)
    values: dict[str, object] = {}
    if args and re.fullmatch(r"[+-]?[0-9]+", args[0].text):  # a number first is the TTL, else a zone
        ttl = plugin.atoi(args.pop(0))
        if ttl <= 0:
            raise plugin.error(directive.args[0], f"cache TTL can not be zero or negative: {ttl}")
        values.update(success_ttl=ttl, denial_ttl=ttl)
    values["zones"] = plugin.zones(args)
    for option in plugin.options(directive):
        name = option.name.text
        if name in ("success", "denial"):
            values.update(_cache_kind(plugin, option))
        elif name == "prefetch":
            values.update(_prefetch(plugin, option))
        elif name == "serve_stale":
            values.update(_serve_stale(plugin, option))
        elif name == "servfail":
            duration = plugin.duration(plugin.one_arg(option))
            if duration < 0:
                raise plugin.error(option.args[0], "invalid negative ttl for servfail")
            if duration > MAX_SERVFAIL_TTL:
                raise plugin.error(option.args[0], "caching SERVFAIL responses over 5 minutes is not permitted")
            values["servfail_ttl"] = duration
        elif name == "disable":
            if not option.args:
                raise plugin.arg_error(option.name)
            kind = option.args[0].text
            if kind not in ("success", "denial"):
                raise plugin.error(option.args[0], 'cache type for disable must be "success" or "denial"')
            values[f"disable_{kind}"] = tuple(plugin.domain_name(token) for token in option.args[1:])
        elif name == "keepttl":
            plugin.no_args(option)
            values["keepttl"] = True
        else:
            raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown cache option
    return CacheSettings(**values)  # type: ignore[arg-type]


def _cache_kind(plugin: Reader, option: Directive) -> dict[str, object]:
    """`success|denial CAPACITY [TTL [MINTTL]]`."""
    kind = option.name.text
    if not 1 <= len(option.args) <= 3:
        raise plugin.arg_error(last(option))
    capacity = plugin.atoi(option.args[0])
    # plugin/pkg/cache: whole shards only, and never fewer than 4 entries a shard
    changes: dict[str, object] = {f"{kind}_capacity": max(MIN_CACHE_CAPACITY, capacity - capacity % CACHE_SHARDS)}
    if len(option.args) > 1:
        ttl = plugin.atoi(option.args[1])
        if ttl <= 0:
            raise plugin.error(option.args[1], f"cache TTL can not be zero or negative: {ttl}")
        changes[f"{kind}_ttl"] = ttl
    if len(option.args) > 2:
        min_ttl = plugin.atoi(option.args[2])
        if min_ttl < 0:
            raise plugin.error(option.args[2], f"cache min TTL can not be negative: {min_ttl}")
        changes[f"{kind}_min_ttl"] = min_ttl
    return changes


def _prefetch(plugin: Reader, option: Directive) -> dict[str, object]:
    """`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`."""
    if not 1 <= len(option.args) <= 3:
        raise plugin.arg_error(last(option))
    amount = plugin.atoi(option.args[0])
    if amount < 0:
        raise plugin.error(option.args[0], f"prefetch amount should be positive: {amount}")
    changes: dict[str, object] = {"prefetch_amount": amount}
    if len(option.args) > 1:
        changes["prefetch_duration"] = plugin.duration(option.args[1])
    if len(option.args) > 2:
        token = option.args[2]
        if not token.text.endswith("%"):
            raise plugin.error(token, f"last character of percentage should be `%`, but is: '{token.text[-1:]}'")
        percentage = plugin.atoi(Token(token.text[:-1], token.file, token.line, token.quoted))
        if not MIN_PREFETCH_PERCENTAGE <= percentage <= MAX_PREFETCH_PERCENTAGE:
            raise plugin.error(token, f"percentage should fall in range [10, 90]: {percentage}")
        changes["prefetch_percentage"] = percentage
    return changes


def _serve_stale(plugin: Reader, option: Directive) -> dict[str, object]:
    """`serve_stale [DURATION [immediate|verify]]`."""
    if len(option.args) > 2:
        raise plugin.error(option.args[2], "a serve_stale verify timeout is not supported by this server")
    duration = plugin.duration(option.args[0]) if option.args else 3600.0
    if duration < 0:
        raise plugin.error(option.args[0], "invalid negative duration for serve_stale")
    verify = False
    if len(option.args) > 1:
        mode = option.args[1].text.lower()
        if mode not in ("immediate", "verify"):
            raise plugin.error(option.args[1], f"invalid value for serve_stale refresh mode: {mode}")
        verify = mode == "verify"
    return {"serve_stale": duration, "serve_stale_verify": verify}


PLUGIN = PluginSpec("cache", setup, in_chain=True)
