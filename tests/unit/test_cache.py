"""The forwarding cache (pure): lifetimes by RFC 2308 and CoreDNS's caps, TTL count-down, normalisation, LRU.

Upstream replies are built with dnspython (an independent DNS implementation) and the served
replies are read back with it.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dns_server.cache import MIN_TTL, STALE_TTL, BadReply, ForwardCache, prepare
from dns_server.pipeline import Pipeline
from dns_server.wire import decode_query

NOW = 1000.0
SOA_TEXT = "ns.example.com. hostmaster.example.com. 1 7200 1800 86400 {minimum}"


def upstream_reply(name: str = "www.example.com", qtype: str = "A", rcode: int = dns.rcode.NOERROR,
                   answer: tuple[tuple[int, str], ...] | list[tuple[int, str]] = (), soa: tuple[int, int] | None = None, edns: bool = False,
                   tc: bool = False, aa: bool = True, do: bool = False) -> tuple[bytes, bytes]:
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
    key = Pipeline.cache_key(decode_query(query.to_wire()))
    return key, reply.to_wire(max_size=65535)


LIFETIMES = [
    ("positive: the smallest TTL", dict(answer=[(300, "192.0.2.1"), (120, "192.0.2.2")]), 120),
    ("positive: capped at 3600", dict(answer=[(86400, "192.0.2.1")]), 3600),
    ("positive: at least 5 s", dict(answer=[(1, "192.0.2.1")]), MIN_TTL),
    ("positive TTL 0: at least 5 s", dict(answer=[(0, "192.0.2.1")]), MIN_TTL),
    ("NXDOMAIN: the SOA minimum", dict(rcode=dns.rcode.NXDOMAIN, soa=(3600, 60)), 60),
    ("NXDOMAIN: the SOA TTL when smaller", dict(rcode=dns.rcode.NXDOMAIN, soa=(30, 600)), 30),
    ("NXDOMAIN: capped at 1800", dict(rcode=dns.rcode.NXDOMAIN, soa=(86400, 86400)), 1800),
    ("NXDOMAIN: at least 5 s", dict(rcode=dns.rcode.NXDOMAIN, soa=(3600, 1)), MIN_TTL),
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
    cache = ForwardCache(size=10, max_payload=1232)
    entry = cache.store(key, wire, NOW)
    assert entry.lifetime == lifetime
    assert (cache.get(key, NOW) is entry) == bool(lifetime)
    if lifetime:
        assert cache.get(key, NOW + lifetime - 0.01) is entry
        assert cache.get(key, NOW + lifetime) is None


def served(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def test_ttls_count_down_with_age_and_never_pass_the_lifetime() -> None:
    key, wire = upstream_reply(answer=[(86400, "192.0.2.1")])
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    assert served(entry.render(NOW, 512)).answer[0].ttl == 3600  # capped, as the lifetime
    assert served(entry.render(NOW + 0.9, 512)).answer[0].ttl == 3600
    assert served(entry.render(NOW + 1, 512)).answer[0].ttl == 3599
    assert served(entry.render(NOW + 1000.5, 512)).answer[0].ttl == 2600
    assert served(entry.render(NOW + 1, 512)).answer[0].ttl == 3599  # the memo follows the age both ways


def test_negative_answers_serve_the_soa_with_the_negative_ttl() -> None:
    key, wire = upstream_reply(rcode=dns.rcode.NXDOMAIN, soa=(3600, 60))
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    reply = served(entry.render(NOW + 10, 512))
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.authority[0].ttl == 50  # RFC 2308 5


def test_records_below_the_floor_count_down_to_zero() -> None:
    key, wire = upstream_reply(answer=[(2, "192.0.2.1")])
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    assert [served(entry.render(NOW + age, 512)).answer[0].ttl for age in (0, 1, 2, 4)] == [2, 1, 0, 0]


def test_replies_are_normalised_id_zero_aa_clear_our_opt() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")], do=True)
    upstream = dns.message.from_wire(wire)
    upstream.use_edns(0, dns.flags.DO, payload=4096, options=[dns.edns.GenericOption(10, b"\x01" * 16)])
    entry = ForwardCache(size=10, max_payload=1232).store(key, upstream.to_wire(), NOW)
    reply = served(entry.render(NOW, 4096))
    assert reply.id == 0 and not reply.flags & dns.flags.AA
    assert reply.edns == 0 and reply.payload == 1232 and reply.ednsflags & dns.flags.DO and not reply.options
    assert reply.answer[0].ttl == 300 and reply.answer[0][0].to_text() == "192.0.2.1"


def test_the_reply_has_an_opt_exactly_when_the_query_had_one() -> None:
    """RFC 6891 7: whatever the upstream did about EDNS, the client gets what matches its query."""
    edns_key, _ = upstream_reply(edns=True)
    _, without_opt = upstream_reply(answer=[(300, "192.0.2.1")])
    added = served(ForwardCache(size=10, max_payload=1232).store(edns_key, without_opt, NOW).render(NOW, 512))
    assert added.edns == 0 and added.payload == 1232 and added.answer[0].ttl == 300
    plain_key, _ = upstream_reply()
    _, with_opt = upstream_reply(answer=[(300, "192.0.2.1")], edns=True)
    dropped = served(ForwardCache(size=10, max_payload=1232).store(plain_key, with_opt, NOW).render(NOW, 512))
    assert dropped.edns == -1 and dropped.answer[0].ttl == 300


def test_a_ttl_with_the_top_bit_set_counts_as_zero() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    wire = wire[:-10] + b"\x80\x00\x00\x01" + wire[-6:]  # the A record's TTL field
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    assert entry.lifetime == MIN_TTL and served(entry.render(NOW, 512)).answer[0].ttl == 0  # RFC 2181 8


def test_a_reply_over_the_limit_is_served_truncated() -> None:
    key, wire = upstream_reply(qtype="TXT", answer=[(300, f'"{c * 200}"') for c in "abcdef"], edns=True)
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    whole = served(entry.render(NOW, 65535))
    assert len(whole.answer[0]) == 6 and not whole.flags & dns.flags.TC
    short = served(entry.render(NOW, 512))
    assert short.flags & dns.flags.TC and not short.answer and short.edns == 0
    assert short.question[0].name.to_text() == "www.example.com."


def test_least_recently_used_entries_are_evicted_first() -> None:
    cache = ForwardCache(size=2, max_payload=1232)
    keys = []
    for i in range(3):
        key, wire = upstream_reply(f"n{i}.example.com", answer=[(300, "192.0.2.1")])
        keys.append(key)
        cache.store(key, wire, NOW)
        if i == 1:
            assert cache.get(keys[0], NOW)  # n0 is now more recently used than n1
    assert len(cache) == 2
    assert cache.get(keys[0], NOW) and cache.get(keys[2], NOW) and cache.get(keys[1], NOW) is None


def test_size_zero_disables_the_cache() -> None:
    cache = ForwardCache(size=0, max_payload=1232)
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    assert cache.store(key, wire, NOW).lifetime == 300  # still served to the client that asked
    assert cache.get(key, NOW) is None and len(cache) == 0


def test_serve_stale_window() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232, serve_stale=3600)
    cache.store(key, wire, NOW)
    assert cache.stale(key, NOW + 30) is None  # still fresh
    assert cache.get(key, NOW + 61) is None  # expired: a miss ...
    stale = cache.stale(key, NOW + 61)  # ... but kept for serve-stale
    assert stale is not None and served(stale.render(NOW + 61, 512, stale=True)).answer[0].ttl == STALE_TTL
    assert cache.stale(key, NOW + 60 + 3600) is None
    assert cache.get(key, NOW + 60 + 3600) is None and len(cache) == 0  # dropped past the window


def test_without_serve_stale_expired_entries_are_dropped() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232)
    cache.store(key, wire, NOW)
    assert cache.get(key, NOW + 61) is None and cache.stale(key, NOW + 61) is None and len(cache) == 0


def test_prefetch_wants_popular_entries_near_expiry() -> None:
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232, prefetch=True)
    cache.store(key, wire, NOW)
    entry = cache.get(key, NOW + 50)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 50)  # neither popular nor near expiry
    entry = cache.get(key, NOW + 91)
    assert entry is not None and cache.wants_prefetch(entry, NOW + 91)  # 2 hits, 9% of its life left
    entry.refreshing = True
    assert not cache.wants_prefetch(entry, NOW + 92)  # one refresh at a time
    assert not ForwardCache(size=10, max_payload=1232).wants_prefetch(entry, NOW + 91)  # off by default


def test_prefetch_ignores_entries_hit_only_once() -> None:
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232, prefetch=True)
    cache.store(key, wire, NOW)
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
        prepare(wire, NOW, 1232, 0)
    assert str(raised.value) == reason


def test_flags_are_kept_but_aa_and_the_truncated_form_adds_tc() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    assert served(wire).flags == dns.flags.QR | dns.flags.AA | dns.flags.RD
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    assert served(entry.render(NOW, 512)).flags == dns.flags.QR | dns.flags.RD
    assert served(entry.truncated).flags == dns.flags.QR | dns.flags.RD | dns.flags.TC


@pytest.mark.parametrize("do", [False, True])
def test_our_opt_carries_the_do_bit_and_nothing_else(do: bool) -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")], edns=True, do=do)
    reply = served(ForwardCache(size=10, max_payload=1232).store(key, wire, NOW).render(NOW, 512))
    assert reply.edns == 0 and reply.ednsflags == (dns.flags.DO if do else 0) and reply.rcode() == dns.rcode.NOERROR


def test_records_after_the_upstreams_opt_are_kept_and_count_down() -> None:
    """The upstream's OPT (with a 20-byte option) replaced by ours, shorter: what follows it moves."""
    glue = rr(1, bytes((192, 0, 2, 53)), ttl=100, owner=b"\x02ns\xc0\x10")
    wire = raw_reply(A_RECORD + opt_rr(b"\x00\x0a\x00\x10" + bytes(16)) + glue, an=1, ar=2)
    entry = ForwardCache(size=10, max_payload=1232).store(PLAIN_KEY, wire, NOW)
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
    assert prepare(wire, NOW, 1232, 0).lifetime == lifetime


def test_a_reply_that_is_not_cached_is_served_with_the_ttls_upstream_gave() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")], tc=True)
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    assert entry.lifetime == 0 and served(entry.render(NOW, 65535)).answer[0].ttl == 300


def test_a_reply_of_exactly_the_clients_size_is_served_whole() -> None:
    key, wire = upstream_reply(answer=[(300, "192.0.2.1")])
    entry = ForwardCache(size=10, max_payload=1232).store(key, wire, NOW)
    size = len(entry.render(NOW, 65535))
    assert not served(entry.render(NOW, size)).flags & dns.flags.TC
    assert served(entry.render(NOW, size - 1)).flags & dns.flags.TC


def test_a_cache_of_one_keeps_one() -> None:
    cache = ForwardCache(size=1, max_payload=1232)
    keys = []
    for name in ("one.example.com", "two.example.com"):
        key, wire = upstream_reply(name, answer=[(300, "192.0.2.1")])
        cache.store(key, wire, NOW)
        keys.append(key)
    assert cache.get(keys[0], NOW) is None and cache.get(keys[1], NOW) is not None


def test_an_entry_is_stale_from_the_moment_it_expires() -> None:
    key, wire = upstream_reply(answer=[(60, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232, serve_stale=3600)
    cache.store(key, wire, NOW)
    assert cache.get(key, NOW + 60) is None and cache.stale(key, NOW + 60) is not None


def test_prefetch_boundaries() -> None:
    """The last 10% of its life (here 10 s), for an entry hit twice with no minute between the hits."""
    key, wire = upstream_reply(answer=[(100, "192.0.2.1")])
    cache = ForwardCache(size=10, max_payload=1232, prefetch=True)
    cache.store(key, wire, NOW)
    cache.get(key, NOW + 40)
    entry = cache.get(key, NOW + 50)
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 50)  # popular, but half its life left
    assert cache.wants_prefetch(entry, NOW + 90)  # 10 s left: the window has begun


def test_a_minute_between_hits_makes_an_entry_unpopular() -> None:
    key, wire = upstream_reply(answer=[(3600, "192.0.2.1")])  # the window: its last 360 s
    cache = ForwardCache(size=10, max_payload=1232, prefetch=True)
    cache.store(key, wire, NOW)
    cache.get(key, NOW + 3250)
    entry = cache.get(key, NOW + 3310)  # exactly PREFETCH_GAP later
    assert entry is not None and not cache.wants_prefetch(entry, NOW + 3310)
    entry = cache.get(key, NOW + 3311)
    assert entry is not None and cache.wants_prefetch(entry, NOW + 3311)
