"""The `cache` plugin for forwarded answers (pure): lifetimes by RFC 2308 and CoreDNS's caps and floors,
TTL count-down, normalisation, the success and denial LRUs, zones and `disable`, serve-stale, prefetch.

Upstream replies are built with dnspython (an independent DNS implementation) and the served
replies are read back with it.
"""

from __future__ import annotations

import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dns_server.plugins.cache import (
    DEFAULT_MIN_TTL,
    STALE_TTL,
    BadReply,
    CacheSettings,
    ForwardCache,
    Kind,
    prepare,
    uncached,
)
from dns_server.protocol.wire import decode_query, question_key

NOW = 1000.0
BUFSIZE = 1232
SOA_TEXT = "ns.example.com. hostmaster.example.com. 1 7200 1800 86400 {minimum}"


def upstream_reply(name: str = "www.example.com", qtype: str = "A", rcode: int = dns.rcode.NOERROR,
                   answer: list[tuple[int, str]] | tuple[()] = (), soa: tuple[int, int] | None = None,
                   edns: bool = False, tc: bool = False, aa: bool = True, do: bool = False) -> tuple[bytes, bytes]:
    """(question key, reply wire) for a reply an upstream might send."""
    query = dns.message.make_query(name, qtype, use_edns=0 if edns or do else False, want_dnssec=do)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for ttl, text in answer:
        reply.answer.append(dns.rrset.from_text(name + ".", ttl, "IN", qtype, text))
    if soa is not None:
        soa_ttl, minimum = soa
        reply.authority.append(dns.rrset.from_text("example.com.", soa_ttl, "IN", "SOA", SOA_TEXT.format(minimum=minimum)))
    if aa:
        reply.flags |= dns.flags.AA
    if tc:
        reply.flags |= dns.flags.TC
    reply.id = 0x4242
    return question_key(decode_query(query.to_wire())), reply.to_wire(max_size=65535)


def cache_with(block_zones: tuple[str, ...] = ("",), **settings: Any) -> ForwardCache:
    """A cache in a block serving `block_zones` (the root by default)."""
    return ForwardCache(CacheSettings(**settings), block_zones)


def keep(cache: ForwardCache, key: bytes, wire: bytes, now: float = NOW, name: str = "www.example.com") -> Any:
    """Store an upstream reply as the outbound side does: prepared for the query's mode, then kept."""
    return cache.store(key, name, prepare(wire, BUFSIZE, key[-1]), now)


def served(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


LIFETIMES = [
    ("success: the smallest TTL", dict(answer=[(300, "192.0.2.1"), (120, "192.0.2.2")]), 120),
    ("success: capped at 3600", dict(answer=[(86400, "192.0.2.1")]), 3600),
    ("success: at least 5 s", dict(answer=[(1, "192.0.2.1")]), DEFAULT_MIN_TTL),
    ("success TTL 0: at least 5 s", dict(answer=[(0, "192.0.2.1")]), DEFAULT_MIN_TTL),
    ("NXDOMAIN: the SOA minimum", dict(rcode=dns.rcode.NXDOMAIN, soa=(3600, 60)), 60),
    ("NXDOMAIN: the SOA TTL when smaller", dict(rcode=dns.rcode.NXDOMAIN, soa=(30, 600)), 30),
    ("NXDOMAIN: capped at 1800", dict(rcode=dns.rcode.NXDOMAIN, soa=(86400, 86400)), 1800),
    ("NXDOMAIN: at least 5 s", dict(rcode=dns.rcode.NXDOMAIN, soa=(3600, 1)), DEFAULT_MIN_TTL),
    ("NODATA with SOA", dict(soa=(3600, 90)), 90),
    ("SERVFAIL: 5 s", dict(rcode=dns.rcode.SERVFAIL), 5),
    ("NXDOMAIN without SOA: not cached", dict(rcode=dns.rcode.NXDOMAIN), 0),
    ("NODATA without SOA: not cached", dict(), 0),
    ("truncated: not cached", dict(answer=[(300, "192.0.2.1")], tc=True), 0),
    ("REFUSED: not cached", dict(rcode=dns.rcode.REFUSED), 0),
]


@pytest.mark.parametrize("what, reply, lifetime", LIFETIMES, ids=[row[0] for row in LIFETIMES])
def test_lifetime(what: str, reply: dict, lifetime: int) -> None:
    key, wire = upstream_reply(**reply)
    cache = cache_with()
    entry = keep(cache, key, wire)
    assert entry.lifetime == lifetime
    assert (cache.get(key, NOW) is entry) == bool(lifetime)
    if lifetime:
        assert cache.get(key, NOW + lifetime - 0.01) is entry
        assert cache.get(key, NOW + lifetime) is None


SETTINGS = dict(success_ttl=30, success_min_ttl=10, denial_ttl=20, denial_min_ttl=2, servfail_ttl=3.0)
CAPS = [
    ("success capped at its TTL", dict(answer=[(300, "192.0.2.1")]), 30),
    ("success raised to its MINTTL", dict(answer=[(4, "192.0.2.1")]), 10),
    ("denial capped at its TTL", dict(rcode=dns.rcode.NXDOMAIN, soa=(600, 600)), 20),
    ("denial raised to its MINTTL", dict(rcode=dns.rcode.NXDOMAIN, soa=(1, 1)), 2),
    ("SERVFAIL for the servfail duration", dict(rcode=dns.rcode.SERVFAIL), 3),
]


@pytest.mark.parametrize("what, reply, lifetime", CAPS, ids=[row[0] for row in CAPS])
def test_the_caps_and_floors_come_from_the_settings(what: str, reply: dict, lifetime: int) -> None:
    """`cache [TTL]`, `success CAPACITY [TTL] [MINTTL]`, `denial ...`, `servfail DURATION` (CoreDNS cache plugin)."""
    key, wire = upstream_reply(**reply)
    assert keep(cache_with(**SETTINGS), key, wire).lifetime == lifetime


def test_ttls_count_down_with_age_and_never_pass_the_lifetime() -> None:
    key, wire = upstream_reply(answer=[(86400, "192.0.2.1")])
    entry = keep(cache_with(), key, wire)
    assert served(entry.render(NOW, 512)).answer[0].ttl == 3600  # capped, as the lifetime
    assert served(entry.render(NOW + 0.9, 512)).answer[0].ttl == 3600
    assert served(entry.render(NOW + 1, 512)).answer[0].ttl == 3599
    assert served(entry.render(NOW + 1000.5, 512)).answer[0].ttl == 2600
    assert served(entry.render(NOW + 1, 512)).answer[0].ttl == 3599  # the memo follows the age both ways


def test_keepttl_serves_the_ttls_as_they_were_stored() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    entry = keep(cache_with(keepttl=True), key, wire)
    assert served(entry.render(NOW + 100, 512)).answer[0].ttl == 300


def test_negative_answers_serve_the_soa_with_the_negative_ttl() -> None:
    key, wire = upstream_reply(rcode=dns.rcode.NXDOMAIN, soa=(3600, 60))
    entry = keep(cache_with(), key, wire)
    reply = served(entry.render(NOW + 10, 512))
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.authority[0].ttl == 50  # RFC 2308 5


def test_records_below_the_floor_count_down_to_zero() -> None:
    key, wire = upstream_reply(answer=[(2, "192.0.2.1")])
    entry = keep(cache_with(), key, wire)
    assert [served(entry.render(NOW + age, 512)).answer[0].ttl for age in (0, 1, 2, 4)] == [2, 1, 0, 0]


def test_replies_are_normalised_id_zero_aa_clear_our_opt() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")], do=True)
    upstream = dns.message.from_wire(wire)
    upstream.use_edns(0, dns.flags.DO, payload=4096, options=[dns.edns.GenericOption(10, b"\x01" * 16)])
    entry = keep(cache_with(), key, upstream.to_wire())
    reply = served(entry.render(NOW, 4096))
    assert reply.id == 0 and not reply.flags & dns.flags.AA
    assert reply.edns == 0 and reply.payload == BUFSIZE and reply.ednsflags & dns.flags.DO and not reply.options
    assert reply.answer[0].ttl == 300 and reply.answer[0][0].to_text() == "192.0.2.1"


def test_the_reply_has_an_opt_exactly_when_the_query_had_one() -> None:
    """RFC 6891 7: whatever the upstream did about EDNS, the client gets what matches its query."""
    edns_key, _ = upstream_reply(edns=True)
    _, without_opt = upstream_reply(answer=[(300, "192.0.2.1")])
    added = served(keep(cache_with(), edns_key, without_opt).render(NOW, 512))
    assert added.edns == 0 and added.payload == BUFSIZE and added.answer[0].ttl == 300
    plain_key, _ = upstream_reply()
    _, with_opt = upstream_reply(answer=[(300, "192.0.2.1")], edns=True)
    dropped = served(keep(cache_with(), plain_key, with_opt).render(NOW, 512))
    assert dropped.edns == -1 and dropped.answer[0].ttl == 300


def test_a_ttl_with_the_top_bit_set_counts_as_zero() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    wire = wire[:-10] + b"\x80\x00\x00\x01" + wire[-6:]  # the A record's TTL field
    entry = keep(cache_with(), key, wire)
    assert entry.lifetime == DEFAULT_MIN_TTL and served(entry.render(NOW, 512)).answer[0].ttl == 0  # RFC 2181 8


def test_a_reply_over_the_limit_is_served_truncated() -> None:
    key, wire = upstream_reply(qtype="TXT", answer=[(300, f'"{c * 200}"') for c in "abcdef"], edns=True)
    entry = keep(cache_with(), key, wire)
    whole = served(entry.render(NOW, 65535))
    assert len(whole.answer[0]) == 6 and not whole.flags & dns.flags.TC
    short = served(entry.render(NOW, 512))
    assert short.flags & dns.flags.TC and not short.answer and short.edns == 0
    assert short.question[0].name.to_text() == "www.example.com."


def test_least_recently_used_entries_are_evicted_first() -> None:
    cache = cache_with(success_capacity=2)
    keys = []
    for i in range(3):
        key, wire = upstream_reply(f"n{i}.example.com", answer=[(300, "192.0.2.1")])
        keys.append(key)
        keep(cache, key, wire, name=f"n{i}.example.com")
        if i == 1:
            assert cache.get(keys[0], NOW)  # n0 is now more recently used than n1
    assert cache.entries(Kind.SUCCESS) == 2 and cache.stats.success_evictions == 1
    assert cache.get(keys[0], NOW) and cache.get(keys[2], NOW) and cache.get(keys[1], NOW) is None
    key, wire = upstream_reply("n3.example.com", answer=[(300, "192.0.2.1")])
    keep(cache, key, wire, name="n3.example.com")
    assert cache.stats.success_evictions == 2  # each eviction counted


def test_success_and_denial_have_lrus_of_their_own() -> None:
    """CoreDNS keeps two caches: a flood of NXDOMAINs cannot push out the answers that work."""
    cache = cache_with(success_capacity=2, denial_capacity=3)
    good = []
    for i in range(2):
        key, wire = upstream_reply(f"ok{i}.example.com", answer=[(300, "192.0.2.1")])
        keep(cache, key, wire, name=f"ok{i}.example.com")
        good.append(key)
    for i in range(10):
        key, wire = upstream_reply(f"nx{i}.example.com", rcode=dns.rcode.NXDOMAIN, soa=(300, 300))
        keep(cache, key, wire, name=f"nx{i}.example.com")
    assert cache.entries(Kind.SUCCESS) == 2 and cache.entries(Kind.DENIAL) == 3
    assert cache.stats.denial_evictions == 7 and cache.stats.success_evictions == 0
    assert all(cache.get(key, NOW) is not None for key in good)
    key, wire = upstream_reply("fail.example.com", rcode=dns.rcode.SERVFAIL)
    keep(cache, key, wire, name="fail.example.com")  # SERVFAIL goes to the denial cache
    assert cache.entries(Kind.DENIAL) == 3 and cache.entries(Kind.SUCCESS) == 2


@pytest.mark.parametrize("block_zones, settings, name, reply, kept", [
    (("",), {}, "www.example.com", "success", True),
    (("example.org",), {}, "www.example.com", "success", False),  # outside the block's zones
    (("",), dict(zones=("example.org",)), "www.example.com", "success", False),  # outside the cache's zones
    (("",), dict(zones=("example.com",)), "www.example.com", "success", True),
    (("",), dict(disable_success=()), "www.example.com", "success", False),  # every zone
    (("",), dict(disable_success=()), "www.example.com", "denial", True),
    (("",), dict(disable_success=("example.com",)), "www.example.com", "success", False),
    (("",), dict(disable_success=("example.org",)), "www.example.com", "success", True),
    (("",), dict(disable_denial=("example.com",)), "www.example.com", "denial", False),
    (("",), dict(disable_denial=("example.com",)), "www.example.com", "success", True),
    (("",), dict(disable_denial=()), "www.example.com", "denial", False),  # every zone
    (("example.com",), dict(disable_denial=()), "www.example.com", "denial", False),  # every zone of the block
])
def test_zones_and_disable(block_zones: tuple[str, ...], settings: dict, name: str, reply: str, kept: bool) -> None:
    key, wire = upstream_reply(name, **(dict(answer=[(300, "192.0.2.1")]) if reply == "success"
                                        else dict(rcode=dns.rcode.NXDOMAIN, soa=(300, 300))))
    cache = cache_with(block_zones, **settings)
    keep(cache, key, wire, name=name)
    assert (cache.get(key, NOW) is not None) == kept


def test_hits_and_misses_are_counted() -> None:
    cache = cache_with()
    ok, ok_wire = upstream_reply("ok.example.com", answer=[(300, "192.0.2.1")])
    nx, nx_wire = upstream_reply("nx.example.com", rcode=dns.rcode.NXDOMAIN, soa=(300, 300))
    assert cache.get(ok, NOW) is None and cache.get(nx, NOW) is None
    keep(cache, ok, ok_wire, name="ok.example.com")
    keep(cache, nx, nx_wire, name="nx.example.com")
    for _ in range(2):
        cache.get(ok, NOW)
    for _ in range(3):
        cache.get(nx, NOW)
    stats = cache.stats
    assert (stats.requests, stats.success_hits, stats.denial_hits, stats.misses) == (7, 2, 3, 2)


def test_counters_put_in_after_the_cache_was_made_get_every_count() -> None:
    """The runtime gives each cache the metrics' counters for its labels once the cache exists."""
    cache = cache_with(success_capacity=1)
    cache.stats = counters = type(cache.stats)()
    for name in ("one.example.com", "two.example.com", "three.example.com"):
        key, wire = upstream_reply(name, answer=[(300, "192.0.2.1")])
        keep(cache, key, wire, name=name)
        cache.get(key, NOW)
    assert (counters.requests, counters.success_hits, counters.success_evictions) == (3, 3, 2)


def test_an_uncached_reply_is_served_with_its_ttls_as_upstream_gave_them() -> None:
    """Without a `cache` directive the reply is served once, its TTLs uncapped and not raised."""
    key, wire = upstream_reply(answer=[(86400, "192.0.2.1")])
    entry = uncached(prepare(wire, BUFSIZE, key[-1]), NOW)
    assert served(entry.render(NOW, 512)).answer[0].ttl == 86400
    key, wire = upstream_reply(answer=[(1, "192.0.2.1")])
    assert served(uncached(prepare(wire, BUFSIZE, key[-1]), NOW).render(NOW, 512)).answer[0].ttl == 1
    key, wire = upstream_reply()
    chain = dns.message.from_wire(wire)  # a CNAME and its target: two TTLs
    chain.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "web.example.com."))
    chain.answer.append(dns.rrset.from_text("web.example.com.", 120, "IN", "A", "192.0.2.1"))
    entry = uncached(prepare(chain.to_wire(), BUFSIZE, key[-1]), NOW)
    assert [rrset.ttl for rrset in served(entry.render(NOW, 512)).answer] == [300, 120]


def test_serve_stale_window() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = cache_with(serve_stale=3600.0)
    keep(cache, key, wire)
    assert cache.stale(key, NOW + 30) is None  # still fresh
    assert cache.get(key, NOW + 61) is None  # expired: a miss ...
    stale = cache.stale(key, NOW + 61)  # ... but kept for serve-stale
    assert stale is not None and served(stale.render(NOW + 61, 512, stale=True)).answer[0].ttl == STALE_TTL == 0
    assert cache.stale(key, NOW + 60 + 3600) is None
    assert cache.get(key, NOW + 60 + 3600) is None and cache.entries(Kind.SUCCESS) == 0  # dropped past the window


def test_an_expired_denial_is_served_stale_too() -> None:
    key, wire = upstream_reply(rcode=dns.rcode.NXDOMAIN, soa=(60, 60))
    cache = cache_with(serve_stale=3600.0)
    keep(cache, key, wire)
    assert cache.get(key, NOW + 61) is None
    stale = cache.stale(key, NOW + 61)
    assert stale is not None and served(stale.render(NOW + 61, 512, stale=True)).rcode() == dns.rcode.NXDOMAIN


def test_without_serve_stale_expired_entries_are_dropped() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = cache_with()
    keep(cache, key, wire)
    assert cache.get(key, NOW + 61) is None and cache.stale(key, NOW + 61) is None
    assert cache.entries(Kind.SUCCESS) == 0


def test_prefetch_wants_popular_entries_near_expiry() -> None:
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = cache_with(prefetch_amount=2)
    keep(cache, key, wire)
    entry = cache.get(key, NOW + 50)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 50)  # neither popular nor near expiry
    entry = cache.get(key, NOW + 91)
    assert entry is not None and cache.wants_prefetch(entry, NOW + 91)  # 2 hits within a minute, 9% of its life left
    entry.refreshing = True
    assert not cache.wants_prefetch(entry, NOW + 92)  # one refresh at a time
    assert not cache_with().wants_prefetch(entry, NOW + 91)  # off without `prefetch`


def test_prefetch_counts_hits_without_a_gap_of_the_duration() -> None:
    key, wire = upstream_reply(answer=[(1000, "192.0.2.1")])
    cache = cache_with(prefetch_amount=2, prefetch_duration=60.0)
    keep(cache, key, wire)
    cache.get(key, NOW + 10)
    entry = cache.get(key, NOW + 950)  # 940 s since the last hit: the count starts again
    assert entry is not None and entry.hits == 1 and not cache.wants_prefetch(entry, NOW + 950)
    entry = cache.get(key, NOW + 960)
    assert entry is not None and entry.hits == 2 and cache.wants_prefetch(entry, NOW + 960)


def test_prefetch_at_the_latest_one_second_before_expiry() -> None:
    key, wire = upstream_reply(answer=[(5, "192.0.2.1")])
    cache = cache_with(prefetch_amount=1, prefetch_percentage=1)  # 1% of 5 s is less than a second
    keep(cache, key, wire)
    entry = cache.get(key, NOW + 3.5)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 3.5)
    entry = cache.get(key, NOW + 4.2)
    assert entry is not None and cache.wants_prefetch(entry, NOW + 4.2)


def test_prefetch_ignores_entries_hit_only_once() -> None:
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = cache_with(prefetch_amount=2)
    keep(cache, key, wire)
    entry = cache.get(key, NOW + 95)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 95)


def raw_reply(sections: bytes, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x8180) -> bytes:
    """An upstream reply to `www.example.com A`, its records written out byte by byte."""
    question = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    return struct.pack("!HHHHHH", 0x4242, flags, 1, an, ns, ar) + question + sections


def rr(rtype: int, rdata: bytes, ttl: int = 300, owner: bytes = b"\xc0\x0c") -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def opt_rr(options: bytes = b"", owner: bytes = b"\x00", ext_rcode: int = 0) -> bytes:
    return owner + struct.pack("!HHBBHH", 41, 4096, ext_rcode, 0, 0, len(options)) + options


A_RECORD = rr(1, bytes((192, 0, 2, 1)))
PLAIN_KEY = upstream_reply()[0]


@pytest.mark.parametrize("what, wire, reason", [
    ("empty", b"", "shorter than a header"),
    ("a header alone", b"\x42\x42\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00", "name runs past the end of the packet"),
    ("counts promise records that are not there", b"\x42\x42\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00",
     "name runs past the end of the packet"),
    ("no question", b"\x42\x42\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00", "QDCOUNT is not 1"),
    ("the question cut short", b"\x42\x42\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x00\x00",
     "the question runs past the end"),
    ("a record cut off", raw_reply(A_RECORD[:-2], an=1), "a record runs past the end"),
    ("an OPT in the answer section", raw_reply(opt_rr() + A_RECORD, an=2), "a misplaced, repeated or non-root OPT record"),
    ("an OPT in the authority section", raw_reply(A_RECORD + opt_rr(), an=1, ns=1),
     "a misplaced, repeated or non-root OPT record"),
    ("two OPT records", raw_reply(A_RECORD + opt_rr() + opt_rr(), an=1, ar=2),
     "a misplaced, repeated or non-root OPT record"),
    ("an OPT owned by another name", raw_reply(A_RECORD + opt_rr(owner=b"\xc0\x0c"), an=1, ar=1),
     "a misplaced, repeated or non-root OPT record"),
])
def test_malformed_replies_raise_bad_reply(what: str, wire: bytes, reason: str) -> None:
    with pytest.raises(BadReply) as raised:
        prepare(wire, BUFSIZE, 0)
    assert str(raised.value) == reason


def test_flags_are_kept_but_aa_and_the_truncated_form_adds_tc() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    assert served(wire).flags == dns.flags.QR | dns.flags.AA | dns.flags.RD
    entry = keep(cache_with(), key, wire)
    assert served(entry.render(NOW, 512)).flags == dns.flags.QR | dns.flags.RD
    assert served(entry.reply.truncated).flags == dns.flags.QR | dns.flags.RD | dns.flags.TC


@pytest.mark.parametrize("do", [False, True])
def test_our_opt_carries_the_do_bit_and_nothing_else(do: bool) -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")], edns=True, do=do)
    reply = served(keep(cache_with(), key, wire).render(NOW, 512))
    assert reply.edns == 0 and reply.ednsflags == (dns.flags.DO if do else 0) and reply.rcode() == dns.rcode.NOERROR


def test_records_after_the_upstreams_opt_are_kept_and_count_down() -> None:
    """The upstream's OPT (with a 20-byte option) replaced by ours, shorter: what follows it moves."""
    glue = rr(1, bytes((192, 0, 2, 53)), ttl=100, owner=b"\x02ns\xc0\x10")
    wire = raw_reply(A_RECORD + opt_rr(b"\x00\x0a\x00\x10" + bytes(16)) + glue, an=1, ar=2)
    entry = keep(cache_with(), PLAIN_KEY, wire)
    assert entry.lifetime == 100  # the glue's TTL counts
    reply = served(entry.render(NOW + 30, 512))
    assert reply.edns == -1  # the query had no EDNS
    assert [(rrset.name.to_text(), rrset.ttl) for rrset in reply.answer + reply.additional] == [
        ("www.example.com.", 70), ("ns.example.com.", 70)]
    assert reply.additional[0][0].to_text() == "192.0.2.53"


SOA_RDATA = b"\x00\x00" + struct.pack("!IIIII", 1, 7200, 1800, 86400, 60)  # `. . 1 7200 1800 86400 60`: 22 bytes
LONG_NS = b"\x1a" + b"a" * 26 + b"\xc0\x10"  # an NS name of 29 bytes: as long as an SOA's data


@pytest.mark.parametrize("what, wire, lifetime", [
    ("the smallest SOA there is", raw_reply(rr(6, SOA_RDATA, ttl=3600), ns=1, flags=0x8183), 60),
    ("an NS after the SOA is not the SOA", raw_reply(rr(6, SOA_RDATA, ttl=3600) + rr(2, LONG_NS, ttl=30), ns=2,
                                                    flags=0x8183), 60),
    ("an SOA in the additional section does not count", raw_reply(rr(6, SOA_RDATA), ar=1, flags=0x8183), 0),
    ("an extended RCODE is not NOERROR", raw_reply(A_RECORD + opt_rr(ext_rcode=1), an=1, ar=1), 0),
])
def test_which_replies_are_cached_and_for_how_long(what: str, wire: bytes, lifetime: int) -> None:
    assert cache_with().lifetime(prepare(wire, BUFSIZE, 0), "www.example.com") == lifetime


def test_a_reply_of_exactly_the_clients_size_is_served_whole() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    entry = keep(cache_with(), key, wire)
    size = len(entry.render(NOW, 65535))
    assert not served(entry.render(NOW, size)).flags & dns.flags.TC
    assert served(entry.render(NOW, size - 1)).flags & dns.flags.TC


@pytest.mark.parametrize("servfail_ttl, kept", [(1.0, True), (0.0, False)])
def test_a_lifetime_of_one_second_is_kept_and_of_none_is_not(servfail_ttl: float, kept: bool) -> None:
    key, wire = upstream_reply(rcode=dns.rcode.SERVFAIL)
    cache = cache_with(servfail_ttl=servfail_ttl)
    keep(cache, key, wire)
    assert cache.entries(Kind.DENIAL) == int(kept)


def test_a_reply_without_records_is_served_uncached_as_it_came() -> None:
    key, wire = upstream_reply(rcode=dns.rcode.NXDOMAIN)
    reply = served(uncached(prepare(wire, BUFSIZE, key[-1]), NOW).render(NOW, 512))
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer and not reply.authority


def test_a_cache_of_one_keeps_one() -> None:
    cache = cache_with(success_capacity=1)
    keys = []
    for name in ("one.example.com", "two.example.com"):
        key, wire = upstream_reply(name, answer=[(300, "192.0.2.1")])
        keep(cache, key, wire, name=name)
        keys.append(key)
    assert cache.get(keys[0], NOW) is None and cache.get(keys[1], NOW) is not None


def test_an_entry_is_stale_from_the_moment_it_expires() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = cache_with(serve_stale=3600)
    keep(cache, key, wire)
    assert cache.get(key, NOW + 60) is None and cache.stale(key, NOW + 60) is not None


def test_prefetch_boundaries() -> None:
    """The last 10% of its life (here 10 s), for an entry hit twice with no minute between the hits."""
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = cache_with(prefetch_amount=2)
    keep(cache, key, wire)
    cache.get(key, NOW + 40)
    entry = cache.get(key, NOW + 50)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 50)  # popular, but half its life left
    assert cache.wants_prefetch(entry, NOW + 90)  # 10 s left: the window has begun


def test_a_minute_between_hits_makes_an_entry_unpopular() -> None:
    key, wire = upstream_reply(answer=[(3600, "192.0.2.1")])  # the window: its last 360 s
    cache = cache_with(prefetch_amount=2)
    keep(cache, key, wire)
    cache.get(key, NOW + 3250)
    entry = cache.get(key, NOW + 3310)  # exactly the prefetch duration later
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 3310)
    entry = cache.get(key, NOW + 3311)
    assert entry is not None and cache.wants_prefetch(entry, NOW + 3311)
