"""The forward and cache plugins' options from a Corefile, against real upstream resolvers.

Real parts: the server runs as its own process from a Corefile (`python -m dns_server -conf FILE
-dns.port PORT`); the upstreams are real unbound daemons (tests/integration/upstream.py) whose
query logs and counters (`unbound-control stats_noreset`) show what reached them and over which
transport; the client is dnspython.  Stand-ins: a dead upstream is a UDP socket that never
answers (`Blackhole`); a stopped unbound is an upstream that refuses (ICMP port unreachable).
Names are made unique per test where the module's unbound is shared (`*.wild.example.com` is a
wildcard there).  Expected behaviour: CoreDNS 1.14's forward and cache plugin READMEs.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import dns.message
import dns.query
import pytest

from tests.integration.replies import rcode, ttls, values
from tests.integration.server import ServerProcess, free_port, wait_for
from tests.integration.upstream import Blackhole, Unbound, settle

ANSWER_DEADLINE = 15.0  # a loaded machine is slow; the server is not wrong for it
_serial = itertools.count()


def unique(label: str, zone: str = "wild.example.com") -> str:
    """A name no other test asks (under the upstream's wildcard, it exists)."""
    return f"{label}-{next(_serial)}-{time.monotonic_ns() % 10**9}.{zone}"


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound")) as running:
        yield running


# A block that answers at once, for the start-up probe: a probe forwarded to a dead upstream never would.
READY = """\
ready.invalid {
    hosts {
        192.0.2.1 ready.invalid
    }
}
"""


def corefile_server(tmp_path: Path, corefile: str, port: int | None = None, **env: str) -> ServerProcess:
    """The server from this Corefile (plus READY); `with` starts and stops it."""
    return ServerProcess.from_corefile(tmp_path, corefile + READY, port=port, env=env, ready_name="ready.invalid",
                                       ready_type="A")


# -- forward ---------------------------------------------------------------------------------------

def test_except_names_are_not_forwarded(tmp_path: Path, unbound: Unbound) -> None:
    """`except example.net`: the name is not sent upstream; no plugin is left, so SERVFAIL (CoreDNS's
    NextOrFailure), which the errors plugin reports with forward's "no next plugin found"."""
    corefile = """\
. {
    errors
    forward . {$UNBOUND} {
        except example.net
    }
}
"""
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        assert values(server.ask("www.example.com")) == ["192.0.2.10"]
        assert rcode(server.ask("ns.example.net")) == "SERVFAIL"
        wait_for(lambda: bool(server.log_lines("[ERROR] plugin/errors: 2 ns.example.net. A: ")), ANSWER_DEADLINE,
                 "the error line")
        assert server.log_lines("[ERROR] plugin/errors: 2 ns.example.net. A: ") == [
            "[ERROR] plugin/errors: 2 ns.example.net. A: plugin/forward: no next plugin found"]
    settle(unbound)
    assert not unbound.has_seen("ns.example.net", "A")


def test_force_tcp_asks_upstream_over_tcp(tmp_path: Path, unbound: Unbound) -> None:
    """A UDP client's question reaches unbound over TCP (its counters say so)."""
    corefile = """\
. {
    forward . {$UNBOUND} {
        force_tcp
    }
}
"""
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        before = unbound.stats().get("num.query.tcp", 0)
        assert values(server.ask(unique("force-tcp"), transport="udp")) == ["192.0.2.99"]
        assert unbound.stats()["num.query.tcp"] == before + 1


def test_prefer_udp_asks_upstream_over_udp_even_for_a_tcp_client(tmp_path: Path, unbound: Unbound) -> None:
    """Without `prefer_udp` a TCP client's question goes upstream over TCP (RFC 7766); with it, over UDP."""
    corefile = """\
.:{$PLAIN} {
    forward . {$UNBOUND}
}
.:{$PREFER} {
    forward . {$UNBOUND} {
        prefer_udp
    }
}
"""
    plain, prefer = free_port(), free_port()
    with corefile_server(tmp_path, corefile, plain, UNBOUND=unbound.address, PLAIN=str(plain),
                         PREFER=str(prefer)) as server:
        before = unbound.stats().get("num.query.tcp", 0)
        assert values(server.ask(unique("plain"), transport="tcp")) == ["192.0.2.99"]
        assert unbound.stats()["num.query.tcp"] == before + 1
        assert values(server.at(port=prefer).ask(unique("prefer-udp"), transport="tcp")) == ["192.0.2.99"]
        assert unbound.stats()["num.query.tcp"] == before + 1


def test_policy_sequential_always_asks_the_first_upstream(tmp_path: Path, unbound: Unbound) -> None:
    """Two healthy upstreams: every question goes to the first listed (random would spread them)."""
    with Unbound(tmp_path / "second") as second:
        corefile = """\
. {
    forward . {$FIRST} {$SECOND} {
        policy sequential
    }
}
"""
        with corefile_server(tmp_path, corefile, FIRST=unbound.address, SECOND=second.address) as server:
            names = [unique("sequential") for _ in range(12)]
            for name in names:
                assert values(server.ask(name)) == ["192.0.2.99"]
        settle(unbound)
        settle(second)
        assert all(unbound.has_seen(name, "A") for name in names)
        assert not any(second.has_seen(name, "A") for name in names)


def test_max_fails_0_never_marks_an_upstream_down(tmp_path: Path, unbound: Unbound) -> None:
    """A dead first upstream, sequential policy: with `max_fails 0` every question still tries it first
    (then unbound answers); with the default of 2 it would be skipped after two failures."""
    blackhole = Blackhole()
    try:
        corefile = """\
. {
    forward . {$DEAD} {$UNBOUND} {
        policy sequential
        max_fails 0
    }
}
"""
        with corefile_server(tmp_path, corefile, DEAD=blackhole.address, UNBOUND=unbound.address) as server:
            names = [unique("max-fails") for _ in range(4)]
            for name in names:
                assert values(server.ask(name, timeout=ANSWER_DEADLINE)) == ["192.0.2.99"]
            asked = [question.split()[0] for question in blackhole.questions()]
            assert [name + "." for name in names] == [a for a in asked if a != "."]  # "." NS: health probes
    finally:
        blackhole.close()


NEXT_FIRST = """\
$ORIGIN example.org.
@      3600 IN SOA ns.example.org. hostmaster.example.org. 1 7200 1800 86400 60
@      3600 IN NS  ns.example.org.
ns      300 IN A   192.0.2.70
first   300 IN A   192.0.2.71
"""
NEXT_SECOND = NEXT_FIRST.replace("first   300 IN A   192.0.2.71", "www     300 IN A   192.0.2.80")


def test_next_nxdomain_asks_the_next_forward(tmp_path: Path) -> None:
    """`next NXDOMAIN` on the first forward line: its NXDOMAIN goes on to the second line's upstream."""
    with Unbound(tmp_path / "first", zones={"example.org": NEXT_FIRST}) as first, \
            Unbound(tmp_path / "second", zones={"example.org": NEXT_SECOND}) as second:
        corefile = """\
. {
    forward . {$FIRST} {
        next NXDOMAIN
    }
    forward . {$SECOND}
}
"""
        with corefile_server(tmp_path, corefile, FIRST=first.address, SECOND=second.address) as server:
            assert values(server.ask("www.example.org")) == ["192.0.2.80"]  # first: NXDOMAIN, second: the answer
            assert values(server.ask("first.example.org")) == ["192.0.2.71"]  # first answers: not passed on
            assert rcode(server.ask("nowhere.example.org")) == "NXDOMAIN"  # both lack it: the second's NXDOMAIN
        # each upstream logs a query before answering it, and every answer has come back: the logs are complete
        assert second.has_seen("nowhere.example.org", "A")
        assert first.has_seen("www.example.org", "A") and second.has_seen("www.example.org", "A")
        assert not second.has_seen("first.example.org", "A")


def test_max_concurrent_refuses_past_the_limit(tmp_path: Path) -> None:
    """`max_concurrent 1` with an upstream that never answers: a second question while the first is in
    flight is REFUSED at once; the first ends in SERVFAIL when the forwarder gives up."""
    blackhole = Blackhole()
    try:
        corefile = """\
. {
    forward . {$DEAD} {
        max_concurrent 1
    }
}
"""
        with corefile_server(tmp_path, corefile, DEAD=blackhole.address) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
                query = dns.message.make_query(unique("in-flight"), "A")
                first.sendto(query.to_wire(), (server.host, server.port))
                wait_for(lambda: any(q.startswith(query.question[0].name.to_text()) for q in blackhole.questions()),
                         ANSWER_DEADLINE, "the first question to reach the upstream")
                assert rcode(server.ask(unique("over-the-limit"))) == "REFUSED"
                first.settimeout(ANSWER_DEADLINE)
                reply = dns.message.from_wire(first.recv(65535))
                assert reply.id == query.id and rcode(reply) == "SERVFAIL"
    finally:
        blackhole.close()


def _can_bind(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def test_a_resolv_conf_file_as_the_upstream(tmp_path: Path) -> None:
    """`forward . FILE`: the `nameserver` lines, on port 53 (resolv.conf has no ports), so unbound listens
    on 127.0.53.53:53 (Linux routes all of 127/8 to lo; binding port 53 needs root)."""
    if os.geteuid() != 0 or not _can_bind("127.0.53.53", 53):
        pytest.skip("needs root and 127.0.53.53:53 free: a resolv.conf names upstreams on port 53 only")
    with Unbound(tmp_path / "unbound", port=53, host="127.0.53.53") as upstream:
        resolv_conf = tmp_path / "resolv.conf"
        resolv_conf.write_text("# written by the test\nsearch example.com\nnameserver 127.0.53.53\noptions ndots:5\n")
        corefile = ". {\n    forward . {$RESOLV_CONF}\n}\n"
        with corefile_server(tmp_path, corefile, RESOLV_CONF=str(resolv_conf)) as server:
            assert values(server.ask("www.example.com")) == ["192.0.2.10"]
        assert upstream.has_seen("www.example.com", "A")


# -- cache ------------------------------------------------------------------------------------------

def test_cache_ttl_caps_the_ttl_served(tmp_path: Path, unbound: Unbound) -> None:
    """`cache 30`: upstream TTLs of 300 and 86400 are served as at most 30, on the miss and on the hit."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache 30
}
"""
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        for name in ("long.example.com", unique("capped")):
            miss = server.ask(name)
            assert values(miss) and ttls(miss) == {30}
            hit = server.ask(name)
            assert values(hit) == values(miss) and max(ttls(hit)) <= 30
            settle(unbound)
            assert unbound.count(name, "A") == 1


def test_cache_disable_success_and_denial_per_zone(tmp_path: Path, unbound: Unbound) -> None:
    """`disable success wild.example.com` and `disable denial example.net`: those answers go upstream
    every time; the other kind in the same zone, and other zones, are still cached."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache 30 {
        disable success wild.example.com
        disable denial example.net
    }
}
"""
    cases = [  # name, rcode, upstream queries for two client queries
        (unique("not-cached"), "NOERROR", 2),
        (unique("cached", "example.com"), "NXDOMAIN", 1),
        (unique("not-cached", "example.net"), "NXDOMAIN", 2),
        ("mail.example.com", "NOERROR", 1),
    ]
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        for name, expected, _ in cases:
            assert [rcode(server.ask(name)), rcode(server.ask(name))] == [expected, expected]
    settle(unbound)
    assert [unbound.count(name, "A") for name, _, _ in cases] == [count for _, _, count in cases]


def test_keepttl_serves_the_original_ttl(tmp_path: Path, unbound: Unbound) -> None:
    """Two blocks, one with `keepttl`: once the other's TTL has counted down, the keepttl one still serves 30."""
    corefile = """\
.:{$KEEP} {
    forward . {$UNBOUND}
    cache 30 {
        keepttl
    }
}
.:{$COUNT} {
    forward . {$UNBOUND}
    cache 30
}
"""
    keep, count = free_port(), free_port()
    with corefile_server(tmp_path, corefile, keep, UNBOUND=unbound.address, KEEP=str(keep), COUNT=str(count)) as server:
        counting = server.at(port=count)
        name = unique("keepttl")
        assert ttls(server.ask(name)) == ttls(counting.ask(name)) == {30}
        wait_for(lambda: max(ttls(counting.ask(name))) < 30, ANSWER_DEADLINE, "the other block's TTL to count down")
        assert ttls(server.ask(name)) == {30}
    settle(unbound)
    assert unbound.count(name, "A") == 2  # one per block: the keepttl answer came from its cache


def test_serve_stale_answers_from_an_expired_entry_while_the_upstream_is_down(tmp_path: Path) -> None:
    """`success 9984 1 0`: entries live 1 s.  After that, with the upstream stopped, the stale answer
    is served with TTL 0 (CoreDNS's immediate mode); a name never cached gets SERVFAIL."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache {
        success 9984 1 0
        serve_stale
    }
}
"""
    upstream = Unbound(tmp_path / "unbound").start()
    try:
        with corefile_server(tmp_path, corefile, UNBOUND=upstream.address) as server:
            fresh = server.ask("www.example.com")
            assert values(fresh) == ["192.0.2.10"] and ttls(fresh) == {1}
            upstream.stop()

            def stale() -> bool:
                reply = server.ask("www.example.com")
                assert rcode(reply) == "NOERROR" and values(reply) == ["192.0.2.10"]
                return ttls(reply) == {0}

            wait_for(stale, ANSWER_DEADLINE, "the expired entry to be served stale")
            assert rcode(server.ask("mail.example.com")) == "SERVFAIL"
    finally:
        upstream.stop()


def test_serve_stale_immediate_answers_at_once_and_refreshes_behind(tmp_path: Path, unbound: Unbound) -> None:
    """`serve_stale` (mode immediate, CoreDNS's default) with the upstream up: an expired entry is still served,
    with TTL 0, while it is fetched anew (in mode verify the fresh answer would be awaited instead)."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache {
        success 9984 1 0
        serve_stale
    }
}
"""
    name = unique("stale-immediate")
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        assert ttls(server.ask(name)) == {1}
        wait_for(lambda: ttls(server.ask(name)) == {0}, ANSWER_DEADLINE, "the expired entry to be served stale")
        wait_for(lambda: unbound.count(name, "A") >= 2, ANSWER_DEADLINE, "the entry to be fetched anew")


def test_prefetch_refreshes_a_popular_entry_before_it_expires(tmp_path: Path, unbound: Unbound) -> None:
    """`prefetch 1 1m 90%`: an entry asked for again once 90% of its 60 s are left (after 6 s) is
    fetched anew in the background, well before it expires (the deadline is shorter than its life)."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache 60 {
        prefetch 1 1m 90%
    }
}
"""
    name = unique("prefetch")
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        assert values(server.ask(name)) == ["192.0.2.99"]

        def refreshed() -> bool:
            assert values(server.ask(name)) == ["192.0.2.99"]
            return unbound.count(name, "A") == 2

        wait_for(refreshed, 45.0, "a second upstream query for the popular entry", interval=0.5)


@pytest.mark.parametrize("kind, zone", [("success", "wild.example.com"), ("denial", "example.net")])
def test_cache_capacity_evicts_the_least_recently_used(tmp_path: Path, unbound: Unbound, kind: str, zone: str) -> None:
    """`success 1024` / `denial 1024` (the smallest capacity): after 1100 other answers the first one
    asked is gone and goes upstream again; the last one asked is still cached."""
    corefile = """\
. {
    forward . {$UNBOUND}
    cache {
        KIND 1024
    }
}
""".replace("KIND", kind)  # entries live 300 s (success) and 1800 s (denial): nothing expires meanwhile
    names = [unique(f"fill-{kind}", zone) for _ in range(1100)]
    with corefile_server(tmp_path, corefile, UNBOUND=unbound.address) as server:
        for name in names:
            reply = server.ask(name)
            assert rcode(reply) == ("NOERROR" if kind == "success" else "NXDOMAIN")
        server.ask(names[0])
        server.ask(names[-1])
    settle(unbound)
    assert (unbound.count(names[0], "A"), unbound.count(names[-1], "A")) == (2, 1)
