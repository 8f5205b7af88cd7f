"""The forwarding cache's TTL arithmetic, as properties over random upstream replies and ages.

For any reply an upstream may send (a CNAME chain ending in an address, with authority and
additional records, each with its own TTL; or NXDOMAIN with an SOA) and any age:
- the entry lives for its smallest TTL (min(SOA TTL, MINIMUM) for a denial, RFC 2308 5), raised to
  5 s and capped at 3600 s (1800 s for a denial), as CoreDNS's cache does;
- every served TTL is the record's TTL, capped by that lifetime, less the entry's age in whole
  seconds, never below 0: so never above what upstream said, never negative, counting down;
- the entry is a hit until its lifetime has passed, and not after.
Upstream replies are built with dnspython and the served replies read back with it.
"""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
import dns.rrset
from hypothesis import given
from hypothesis import strategies as st

from dns_server.plugins.cache import CacheSettings, Entry, ForwardCache, prepare
from dns_server.protocol.wire import MODE_RD, name_to_wire

NOW = 1000.0
MIN_TTL, MAX_SUCCESS_TTL, MAX_DENIAL_TTL = 5, 3600, 1800  # CoreDNS's cache defaults
NAME = "www.example.com"
KEY = name_to_wire(NAME) + struct.pack("!HH", 1, 1) + bytes((MODE_RD,))  # `www.example.com A IN`, RD, no EDNS

ttl_values = st.integers(0, 2**31 - 1)  # RFC 2181 8: a TTL with the top bit set is another matter
ages = st.builds(lambda seconds, fraction: seconds + fraction, st.integers(0, 5000),
                 st.sampled_from([0.0, 0.25, 0.5, 0.999]))


def cache_and_store(wire: bytes, now: float) -> tuple[ForwardCache, Entry]:
    """A cache with the default limits, holding this upstream reply to KEY's question."""
    cache = ForwardCache(CacheSettings(success_capacity=100, denial_capacity=100), ("",))
    return cache, cache.store(KEY, NAME, prepare(wire, 1232, KEY[-1]), now)


def served_ttls(entry: Entry, now: float) -> list[int]:
    """The TTL of every record served at `now`, answer, authority and additional sections in turn."""
    reply = dns.message.from_wire(entry.render(now, 65535))
    return [rrset.ttl for section in (reply.answer, reply.authority, reply.additional) for rrset in section]


def success(chain: list[int], authority: int | None, additional: int | None) -> tuple[bytes, list[int]]:
    """An upstream reply: CNAMEs then an A record with the TTLs of `chain`, an NS and its address; its TTLs."""
    reply = dns.message.make_response(dns.message.make_query(NAME, "A"))
    owners = [f"{NAME}."] + [f"hop{i}.example.net." for i in range(1, len(chain))]
    for i, ttl in enumerate(chain[:-1]):
        reply.answer.append(dns.rrset.from_text(owners[i], ttl, "IN", "CNAME", owners[i + 1]))
    reply.answer.append(dns.rrset.from_text(owners[-1], chain[-1], "IN", "A", "192.0.2.1"))
    ttls = list(chain)
    if authority is not None:
        reply.authority.append(dns.rrset.from_text("example.com.", authority, "IN", "NS", "ns.example.com."))
        ttls.append(authority)
    if additional is not None:
        reply.additional.append(dns.rrset.from_text("ns.example.com.", additional, "IN", "A", "192.0.2.53"))
        ttls.append(additional)
    return reply.to_wire(), ttls


@given(st.lists(ttl_values, min_size=1, max_size=4), st.none() | ttl_values, st.none() | ttl_values, ages)
def test_an_answer_lives_for_its_smallest_ttl_and_serves_every_ttl_counted_down(
        chain: list[int], authority: int | None, additional: int | None, age: float) -> None:
    wire, ttls = success(chain, authority, additional)
    cache, entry = cache_and_store(wire, NOW)
    lifetime = max(min(min(ttls), MAX_SUCCESS_TTL), MIN_TTL)
    assert entry.lifetime == lifetime
    assert served_ttls(entry, NOW + age) == [max(min(ttl, lifetime) - int(age), 0) for ttl in ttls]
    assert (cache.get(KEY, NOW + age) is entry) == (age < lifetime)


@given(ttl_values, ttl_values, ages)
def test_a_denial_lives_for_the_soa_minimum_and_serves_the_soa_counted_down(soa_ttl: int, minimum: int,
                                                                              age: float) -> None:
    reply = dns.message.make_response(dns.message.make_query(NAME, "A"))
    reply.set_rcode(dns.rcode.NXDOMAIN)
    reply.authority.append(dns.rrset.from_text(
        "example.com.", soa_ttl, "IN", "SOA", f"ns.example.com. hostmaster.example.com. 1 7200 1800 86400 {minimum}"))
    cache, entry = cache_and_store(reply.to_wire(), NOW)
    lifetime = max(min(soa_ttl, minimum, MAX_DENIAL_TTL), MIN_TTL)
    assert entry.lifetime == lifetime
    assert served_ttls(entry, NOW + age) == [max(min(soa_ttl, lifetime) - int(age), 0)]
    assert (cache.get(KEY, NOW + age) is entry) == (age < lifetime)


@given(st.lists(ttl_values, min_size=1, max_size=3), st.lists(ages, min_size=2, max_size=5))
def test_served_ttls_only_ever_count_down(chain: list[int], times: list[float]) -> None:
    """However the ages of the requests are interleaved (a rendered reply is kept per second of age)."""
    wire, ttls = success(chain, None, None)
    _, entry = cache_and_store(wire, NOW)
    for age in times:  # in the order drawn, not sorted: the kept rendering must follow the age both ways
        assert served_ttls(entry, NOW + age) == [max(min(ttl, entry.lifetime) - int(age), 0) for ttl in ttls]
