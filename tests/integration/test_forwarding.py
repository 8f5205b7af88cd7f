"""Forwarding and the forwarding cache, over the wire, against a real upstream resolver.

Real parts: our server runs as its own process (`python -m dns_server`) on the bundled zones/
example cluster; the upstream is the real unbound daemon from Debian serving test zones
(tests/integration/upstream.py), whose query log and counters show what reached it; the client
is dnspython.  A dead upstream is a UDP socket that never answers (`Blackhole`), or a port nobody
listens on.  Names are made unique per test (`*.wild.example.com` is a wildcard upstream) because
the server, and so its cache, is shared by the tests of this module, and unbound by the session.
"""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.cluster_data import ZONES
from tests.integration.server import ServerProcess, free_port, texts, wait_for
from tests.integration.upstream import Blackhole, Unbound, settle

Z = "cluster.local"
TRANSPORTS = ["udp", "tcp"]
WAIT = 10.0  # for what happens within a second or two: generous, for a loaded machine
REPLY_WAIT = 30.0  # for a reply the forwarder sends after its 5 s deadline at the latest
STALE_WAIT = 30.0  # for a cached entry (at most TTL 10 here) to expire
_serial = itertools.count()


def unique(label: str, wildcard: str = "wild") -> str:
    """A name no other test asks: the upstream answers it from its wildcard `*.<wildcard>.example.com`."""
    return f"{label}-{next(_serial)}-{time.monotonic_ns() % 10**9}.{wildcard}.example.com"


@pytest.fixture(scope="module")
def server(unbound: Unbound) -> Iterator[ServerProcess]:
    with ServerProcess("--fixtures", str(ZONES), "--upstream", unbound.address) as running:
        yield running


def ask(server: ServerProcess, transport: str, name: str, qtype: str = "A", **kw: object) -> dns.message.Message:
    message = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
    return server.udp(message) if transport == "udp" else server.tcp(message)


FORWARDED = [
    ("A", {"www.example.com. A 192.0.2.10"}),
    ("AAAA", {"www.example.com. AAAA 2001:db8::10"}),
    ("MX", {"www.example.com. MX 10 mail.example.com."}),
    ("TXT", {'www.example.com. TXT "v=spf1 -all"'}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("qtype, expected", FORWARDED, ids=[f[0] for f in FORWARDED])
def test_outside_names_are_forwarded(server: ServerProcess, unbound: Unbound, transport: str, qtype: str,
                                     expected: set[str]) -> None:
    """unbound's records come back to the client, with the client's ID and question, AA clear."""
    query = dns.message.make_query("www.example.com", qtype)
    reply = server.udp(query) if transport == "udp" else server.tcp(query)
    assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR
    assert texts(reply.answer) == expected
    assert not reply.flags & dns.flags.AA  # we are not the authority for example.com
    assert unbound.has_seen("www.example.com", qtype)


def test_question_case_is_echoed_on_forwarded_misses_and_hits(server: ServerProcess) -> None:
    """Real unbound; the second query is a hit in our cache."""
    name = unique("CaSe")
    for asked in (name.upper(), name.title()):
        reply = ask(server, "udp", asked)
        assert reply.question[0].name.to_text() == asked + "."
        assert reply.answer[0][0].to_text() == "192.0.2.99"


def test_a_truncated_upstream_reply_is_retried_over_tcp(server: ServerProcess, unbound: Unbound) -> None:
    """unbound truncates every UDP reply over 512 bytes: the ~900-byte answer needs TCP upstream."""
    tcp_before = unbound.stats().get("num.query.tcp", 0)
    reply = ask(server, "udp", unique("tcp-fallback", "big"), "TXT", use_edns=0, payload=1232)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 8  # every record, over UDP, to a client with a 1232-byte buffer
    assert unbound.stats()["num.query.tcp"] == tcp_before + 1


def test_forwarded_replies_too_big_for_a_udp_client_are_truncated(server: ServerProcess, unbound: Unbound) -> None:
    """Real unbound; the client's TCP retry is answered from our cache, not by unbound again."""
    name = unique("too-big", "big")
    udp = ask(server, "udp", name, "TXT")  # no EDNS: 512 bytes at most
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask(server, "tcp", name, "TXT")
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 8
    settle(unbound)
    assert unbound.count(name, "TXT") == 2  # our UDP try, truncated, and our TCP retry; none for the client's


def test_a_query_over_tcp_goes_upstream_over_tcp(server: ServerProcess, unbound: Unbound) -> None:
    """unbound's counters show the TCP query."""
    before = unbound.stats().get("num.query.tcp", 0)
    assert ask(server, "tcp", unique("over-tcp")).answer
    assert unbound.stats()["num.query.tcp"] == before + 1


def test_the_do_bit_is_carried_upstream_and_edns_echoed(server: ServerProcess, unbound: Unbound) -> None:
    """unbound's counters show the DO bit; our reply carries our own OPT (buffer 1232, DO echoed)."""
    before = unbound.stats().get("num.query.edns.DO", 0)
    reply = ask(server, "udp", unique("dnssec-ok"), use_edns=0, payload=4096, want_dnssec=True)
    assert reply.answer
    assert unbound.stats()["num.query.edns.DO"] == before + 1
    assert reply.edns == 0 and reply.payload == 1232 and reply.ednsflags & dns.flags.DO
    plain = ask(server, "udp", unique("no-edns"))
    assert plain.edns == -1  # no OPT for a client that sent none


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cached_answer_is_not_asked_again(server: ServerProcess, unbound: Unbound, transport: str) -> None:
    """unbound's query log shows one query for two (here three) client queries."""
    name = unique(f"hit-{transport}")
    first = ask(server, transport, name)
    second = ask(server, transport, name)
    third = ask(server, "udp" if transport == "tcp" else "tcp", name)  # the other transport shares the entry
    assert first.answer[0][0].to_text() == second.answer[0][0].to_text() == third.answer[0][0].to_text()
    settle(unbound)
    assert unbound.count(name, "A") == 1


def test_ttls_count_down_in_cached_answers(server: ServerProcess, unbound: Unbound) -> None:
    """Real unbound serves TTL 300; our cache serves it less its age, and caps 86400 at 3600."""
    name = unique("countdown")
    first = ask(server, "udp", name).answer[0].ttl
    assert first == 300
    wait_for(lambda: ask(server, "udp", name).answer[0].ttl < first, WAIT, "the cached TTL to count down")
    settle(unbound)
    assert unbound.count(name, "A") == 1
    assert ask(server, "udp", "long.example.com").answer[0].ttl <= 3600  # upstream says 86400


def test_negative_answers_are_cached_for_the_soa_minimum(server: ServerProcess, unbound: Unbound) -> None:
    """Real unbound: example.com's SOA has TTL 3600 and MINIMUM 6, so NXDOMAIN lives 6 s (RFC 2308 5)."""
    name = f"missing-{next(_serial)}-{time.monotonic_ns() % 10**9}.example.com"
    started = time.monotonic()
    reply = ask(server, "udp", name)
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.flags & dns.flags.AA
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl <= 6
    assert ask(server, "udp", name).rcode() == dns.rcode.NXDOMAIN
    settle(unbound)
    assert unbound.count(name, "A") == 1  # the second NXDOMAIN came from the cache

    def asked_again() -> bool:
        assert ask(server, "udp", name).rcode() == dns.rcode.NXDOMAIN
        return unbound.count(name, "A") == 2

    wait_for(asked_again, STALE_WAIT, "the negative entry to expire and the name to be asked again", interval=0.25)
    assert time.monotonic() - started >= 5  # not before the 5 s floor: it was cached until then


def test_nodata_is_cached_and_negative_ttls_are_capped(server: ServerProcess, unbound: Unbound) -> None:
    """Real unbound: NODATA (an SOA, no answer) is cached; example.net's 86400 s minimum is capped at 1800."""
    for _ in range(2):
        nodata = ask(server, "udp", "www.example.com", "SRV")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    settle(unbound)
    assert unbound.count("www.example.com", "SRV") == 1
    capped = ask(server, "udp", f"nope-{next(_serial)}.example.net")
    assert capped.rcode() == dns.rcode.NXDOMAIN and 1790 <= capped.authority[0].ttl <= 1800


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_externalname_to_an_outside_name(server: ServerProcess, unbound: Unbound, transport: str) -> None:
    """The example cluster's payments-api -> api.payments.example.com, whose address unbound gives."""
    reply = ask(server, transport, f"payments-api.shop.svc.{Z}")
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply.answer) == {f"payments-api.shop.svc.{Z}. CNAME api.payments.example.com.",
                                   "api.payments.example.com. A 192.0.2.20"}
    assert not reply.flags & dns.flags.AA
    settle(unbound)
    assert unbound.count("api.payments.example.com", "A") == 1  # the target is cached for both transports


def test_unknown_reverse_names_are_forwarded(server: ServerProcess, unbound: Unbound) -> None:
    """192.0.2.10 is not a cluster address: unbound's reverse zone answers; a ClusterIP is answered by us."""
    reply = ask(server, "udp", "10.2.0.192.in-addr.arpa", "PTR")
    assert texts(reply.answer) == {"10.2.0.192.in-addr.arpa. PTR www.example.com."}
    assert not reply.flags & dns.flags.AA
    cluster = ask(server, "udp", "20.10.96.10.in-addr.arpa", "PTR")
    assert texts(cluster.answer) == {f"20.10.96.10.in-addr.arpa. PTR frontend.shop.svc.{Z}."}
    assert cluster.flags & dns.flags.AA
    settle(unbound)
    assert unbound.has_seen("10.2.0.192.in-addr.arpa", "PTR")
    assert not unbound.has_seen("20.10.96.10.in-addr.arpa", "PTR")


def test_search_path_misses_are_answered_here_and_never_forwarded(server: ServerProcess, unbound: Unbound) -> None:
    """A pod's search list (ndots:5) turns `api.github.com` into three misses in our zone before the real name;
    unbound's query log proves none of them reached it."""
    misses = [f"api.github.com.shop.svc.{Z}", f"api.github.com.svc.{Z}", f"api.github.com.{Z}"]
    for name, qtype, transport in itertools.product(misses, ["A", "AAAA"], TRANSPORTS):
        reply = ask(server, transport, name, qtype)
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
        assert reply.authority[0].name.to_text() == f"{Z}." and reply.authority[0].rdtype == dns.rdatatype.SOA
    settle(unbound)
    assert not [q for q in unbound.queries() if Z in q]


def test_upstreams_come_from_resolv_conf(tmp_path: Path) -> None:
    """No upstream is asked here: the start-up log shows what the server read from a resolv.conf."""
    lines = ["# a comment", "search shop.svc.cluster.local svc.cluster.local", "options ndots:5",
             "nameserver not-an-address"] + [f"nameserver 192.0.2.{i}" for i in range(1, 17)]
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("\n".join(lines) + "\n")
    with ServerProcess("--fixtures", str(ZONES), "--resolv-conf", str(resolv_conf)) as running:
        log = running.log()
    upstreams = ", ".join(f"192.0.2.{i}:53" for i in range(1, 16))
    assert f"plugin/forward: forwarding names in . to {upstreams} (policy random" in log
    assert "lists 16 nameservers: using the first 15" in log
    assert "ignoring 'nameserver not-an-address'" in log


# -- dead upstreams ----------------------------------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def send_queries(server: ServerProcess, names: list[str]) -> list[tuple[socket.socket, dns.message.Message]]:
    sent = []
    for name in names:
        query = dns.message.make_query(name, "A")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(query.to_wire(), (server.host, server.port))
        sent.append((sock, query))
    return sent


def receive(sock: socket.socket, timeout: float) -> dns.message.Message:
    sock.settimeout(timeout)
    try:
        return dns.message.from_wire(sock.recv(65535))
    finally:
        sock.close()


def test_dead_upstream_gives_servfail_after_retrying_and_refused_over_the_limit(blackhole: Blackhole) -> None:
    """The upstream is a socket that never answers; at most 3 forwarded queries may be in flight."""
    with ServerProcess("--fixtures", str(ZONES), "--upstream", blackhole.address, "--max-concurrent", "3") as server:
        stuck = [unique(f"stuck{i}") for i in range(3)]
        waiting = send_queries(server, stuck)
        wait_for(lambda: len(blackhole.questions()) >= 3, WAIT, "the three queries to reach the dead upstream")
        # refused, not queued: once a slot is free again a query would be forwarded instead
        for sock, _ in send_queries(server, [unique(f"over{i}") for i in range(2)]):
            assert receive(sock, REPLY_WAIT).rcode() == dns.rcode.REFUSED
        for sock, query in waiting:
            reply = receive(sock, REPLY_WAIT)
            assert reply.id == query.id and reply.rcode() == dns.rcode.SERVFAIL
        asked = blackhole.questions()
        # retried within the deadline (2 s per attempt, 5 s in all) before giving up with SERVFAIL
        assert all(asked.count(f"{name}. A") >= 2 for name in stuck), asked
        wait_for(lambda: ". NS" in blackhole.questions(), WAIT, "the dead upstream to be probed with '. NS'")
        assert "marked down, probing it" in server.log()


def test_failover_to_the_second_upstream_when_the_first_is_dead(blackhole: Blackhole, unbound: Unbound) -> None:
    """First upstream: a socket that never answers; second: the real unbound (policy sequential)."""
    args = ["--fixtures", str(ZONES), "--upstream-policy", "sequential",
            "--upstream", blackhole.address, "--upstream", unbound.address]
    with ServerProcess(*args) as server:
        names = [unique("failover1"), unique("failover2")]
        for sock, _ in send_queries(server, names):  # asked of the dead one first, answered by unbound
            assert receive(sock, REPLY_WAIT).answer[0][0].to_text() == "192.0.2.99"
        assert {f"{name}. A" for name in names} <= set(blackhole.questions())
        wait_for(lambda: "marked down" in server.log(), WAIT, "the dead upstream to be marked down")
        third = unique("failover3")
        assert ask(server, "udp", third).answer
        assert f"{third}. A" not in blackhole.questions()  # straight to unbound


def test_a_down_upstream_is_probed_until_it_answers(tmp_path: Path, unbound: Unbound) -> None:
    """First upstream: a port nobody listens on, later a second real unbound; second: the session's unbound."""
    revived = Unbound(tmp_path / "revived", port=free_port())
    args = ["--fixtures", str(ZONES), "--upstream-policy", "sequential",
            "--upstream", revived.address, "--upstream", unbound.address]
    with ServerProcess(*args) as server:
        for label in ("refused1", "refused2"):  # refused at once by the closed port, answered by the second
            assert ask(server, "udp", unique(label)).answer
        wait_for(lambda: "marked down" in server.log(), WAIT, "the closed upstream to be marked down")
        with revived:
            wait_for(lambda: "answers again" in server.log(), WAIT, "the probe to find the upstream back")
            name = unique("revived")
            assert ask(server, "udp", name).answer
            settle(revived)
            assert revived.count(name, "A") == 1  # the first upstream is used again


# -- the cache flags, end to end ----------------------------------------------------------------------------
# `*.short.example.com` has TTL 10 upstream: cached for 10 s, so these tests take about that long.


def test_serve_stale_answers_from_an_expired_entry_when_the_upstream_stops(tmp_path: Path) -> None:
    """A real unbound of its own, stopped mid-test; one server with --serve-stale, one without."""
    name = unique("stale", "short")
    with Unbound(tmp_path / "unbound") as upstream:
        with ServerProcess("--fixtures", str(ZONES), "--upstream", upstream.address, "--serve-stale", "1h") as stale, \
                ServerProcess("--fixtures", str(ZONES), "--upstream", upstream.address) as plain:
            for server in (stale, plain):  # cached by `stale` first, so it expires there first
                assert texts(ask(server, "udp", name).answer) == {f"{name}. A 192.0.2.30"}
            upstream.stop()
            # served from the cache until it expires; then, the upstream gone, SERVFAIL without serve-stale ...
            wait_for(lambda: ask(plain, "udp", name).rcode() == dns.rcode.SERVFAIL, STALE_WAIT,
                     "the entry to expire and the stopped upstream to give SERVFAIL", interval=0.5)
            # ... and the expired answer with it
            reply = ask(stale, "udp", name)
            assert reply.rcode() == dns.rcode.NOERROR and texts(reply.answer) == {f"{name}. A 192.0.2.30"}
            assert ask(stale, "tcp", name).rcode() == dns.rcode.NOERROR


def test_prefetch_refreshes_a_popular_entry_before_it_expires(unbound: Unbound) -> None:
    """Real unbound; its query log shows the refresh that no client asked for."""
    name = unique("prefetch", "short")
    with ServerProcess("--fixtures", str(ZONES), "--upstream", unbound.address, "--prefetch") as server:
        # Ask until the answer is in its last second (served TTL 1): asked that often it is popular, and a hit
        # that close to expiry makes the server fetch it again.  Only hits that close do (10% of its life, at
        # least 1 s), so any earlier refetch was a miss after an expiry, seen here as the TTL going up.
        ttls: list[int] = []

        def in_its_last_second() -> bool:
            ttls.append(ask(server, "udp", name).answer[0].ttl)
            return ttls[-1] <= 1

        wait_for(in_its_last_second, STALE_WAIT, "the cached answer's last second", interval=0.2)
        fetched = 1 + sum(later > earlier for earlier, later in zip(ttls, ttls[1:]))
        # no client asks any more: only a prefetch can reach unbound now
        wait_for(lambda: unbound.count(name, "A") > fetched, STALE_WAIT,
                 f"a refresh of the popular entry at the upstream (fetched {fetched} times by clients)",
                 interval=0.2)
