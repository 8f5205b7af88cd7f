"""hosts, loadbalance, bind, bufsize, errors and log from a Corefile, and routing by zone and port.

Real parts: the server runs as its own process from a Corefile (`python -m dns_server -conf FILE
-dns.port PORT`); the client is dnspython; forwarded names go to the real unbound daemon
(tests/integration/upstream.py), a closed port stands in for an upstream that refuses.  `bind`
uses 127.0.0.2 and 127.0.0.3: Linux routes all of 127/8 to the loopback interface, so both are
local addresses without any setup.  Log lines are read from the process's standard output, where
CoreDNS writes them; expected formats are CoreDNS 1.14's (../shared/COREDNS-REFERENCE.md).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.query
import pytest

from tests.cluster_data import ZONES as CLUSTER_ZONES
from tests.integration.replies import owners, rcode, ttls, values
from tests.integration.server import ServerProcess, free_port, wait_for
from tests.integration.upstream import EXAMPLE_COM, ZONES, Unbound

DEADLINE = 15.0  # for anything the server does in the background (file reloads, log lines)
TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """The usual test zones, plus a name with four addresses (for loadbalance on forwarded answers)."""
    multi = "".join(f"multi 300 IN A 192.0.2.{40 + i}\n" for i in range(1, 5))
    with Unbound(tmp_path_factory.mktemp("unbound"), zones={**ZONES, "example.com": EXAMPLE_COM + multi}) as running:
        yield running


def start(tmp_path: Path, corefile: str, ready_name: str, **env: str) -> ServerProcess:
    return ServerProcess.from_corefile(tmp_path, corefile, env=env, ready_name=ready_name, ready_type="A")


def flags_text(reply: dns.message.Message) -> str:
    """The header flags as CoreDNS's {>rflags} lists them."""
    order = (("qr", dns.flags.QR), ("aa", dns.flags.AA), ("tc", dns.flags.TC), ("rd", dns.flags.RD),
             ("ra", dns.flags.RA), ("ad", dns.flags.AD), ("cd", dns.flags.CD))
    return ",".join(name for name, bit in order if reply.flags & bit) or "-"


# -- hosts -------------------------------------------------------------------------------------------

HOSTS = """\
inline.test 10.in-addr.arpa {
    hosts {
        10.1.0.1 one.inline.test
        fd00::1 one.inline.test
        10.1.0.2 two.inline.test alias.inline.test
    }
}
ttl.test {
    hosts {
        10.1.0.3 www.ttl.test
        ttl 60
    }
}
norev.test 20.in-addr.arpa {
    hosts {
        20.1.0.1 www.norev.test
        no_reverse
    }
}
file.test {
    hosts {$HOSTS_FILE} {
        reload 1s
    }
}
. {
    hosts {
        10.1.0.9 www.example.com
        fallthrough
    }
    forward . {$UNBOUND}
}
"""


@pytest.fixture(scope="module")
def hosts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hosts") / "hosts"
    path.write_text("# a hosts file\n10.3.0.1 app.file.test\n")
    return path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound, hosts_file: Path) -> Iterator[ServerProcess]:
    with start(tmp_path_factory.mktemp("hosts-server"), HOSTS, "one.inline.test", UNBOUND=unbound.address,
               HOSTS_FILE=str(hosts_file)) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name, qtype, expected", [
    ("one.inline.test", "A", ["10.1.0.1"]),
    ("one.inline.test", "AAAA", ["fd00::1"]),
    ("alias.inline.test", "A", ["10.1.0.2"]),
    ("one.inline.test", "MX", []),  # the name exists: NODATA
    ("1.0.1.10.in-addr.arpa", "PTR", ["one.inline.test."]),
    ("2.0.1.10.in-addr.arpa", "PTR", ["two.inline.test.", "alias.inline.test."]),
])
def test_hosts_inline_entries(hosts: ServerProcess, transport: str, name: str, qtype: str, expected: list[str]) -> None:
    reply = hosts.ask(name, qtype, transport)
    assert rcode(reply) == "NOERROR" and values(reply, qtype) == expected
    assert reply.flags & dns.flags.AA and ttls(reply) <= {3600}  # the hosts plugin's default TTL


def test_hosts_without_fallthrough_has_no_nxdomain(hosts: ServerProcess) -> None:
    """A name missing from the table: SERVFAIL, as CoreDNS's hosts plugin (it has no SOA for an NXDOMAIN)."""
    assert rcode(hosts.ask("missing.inline.test")) == "SERVFAIL"


def test_hosts_ttl(hosts: ServerProcess) -> None:
    reply = hosts.ask("www.ttl.test")
    assert values(reply) == ["10.1.0.3"] and ttls(reply) == {60}
    assert ttls(hosts.ask("one.inline.test")) == {3600}


def test_hosts_no_reverse(hosts: ServerProcess) -> None:
    """`no_reverse`: the address has no PTR from hosts (nothing after it: SERVFAIL); the name still resolves."""
    assert values(hosts.ask("www.norev.test")) == ["20.1.0.1"]
    assert rcode(hosts.ask("1.0.1.20.in-addr.arpa", "PTR")) == "SERVFAIL"


def test_hosts_fallthrough_passes_other_names_to_forward(hosts: ServerProcess, unbound: Unbound) -> None:
    """hosts answers its own entry for a name unbound also has; other names reach unbound."""
    assert values(hosts.ask("www.example.com")) == ["10.1.0.9"]
    assert values(hosts.ask("mail.example.com")) == ["192.0.2.25"]
    assert unbound.has_seen("mail.example.com", "A") and not unbound.has_seen("www.example.com", "A")


def test_hosts_file_and_its_reload(hosts: ServerProcess, hosts_file: Path) -> None:
    """The file's entries are served; `reload 1s` picks up a change to it (an address moved, a name added)."""
    assert values(hosts.ask("app.file.test")) == ["10.3.0.1"]
    hosts_file.write_text("# a hosts file, changed\n10.3.0.2 app.file.test\n10.3.0.3 new.file.test\n")
    wait_for(lambda: values(hosts.ask("app.file.test")) == ["10.3.0.2"], DEADLINE, "the changed hosts file")
    assert values(hosts.ask("new.file.test")) == ["10.3.0.3"]


# -- loadbalance ------------------------------------------------------------------------------------

LOADBALANCE = """\
lb.test {
    hosts {
        10.4.0.1 many.lb.test
        10.4.0.2 many.lb.test
        10.4.0.3 many.lb.test
        10.4.0.4 many.lb.test
    }
    loadbalance
}
fixed.test {
    hosts {
        10.4.0.1 many.fixed.test
        10.4.0.2 many.fixed.test
        10.4.0.3 many.fixed.test
        10.4.0.4 many.fixed.test
    }
}
example.com {
    forward . {$UNBOUND}
    cache 30
    loadbalance
}
"""


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound) -> Iterator[ServerProcess]:
    with start(tmp_path_factory.mktemp("lb"), LOADBALANCE, "many.lb.test", UNBOUND=unbound.address) as server:
        yield server


def orders(server: ServerProcess, name: str, transport: str, count: int = 16) -> set[tuple[str, ...]]:
    return {tuple(values(server.ask(name, transport=transport))) for _ in range(count)}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_loadbalance_varies_the_order_not_the_set(balanced: ServerProcess, transport: str) -> None:
    seen = orders(balanced, "many.lb.test", transport)
    assert len(seen) > 1
    assert {frozenset(order) for order in seen} == {frozenset({"10.4.0.1", "10.4.0.2", "10.4.0.3", "10.4.0.4"})}
    assert len(orders(balanced, "many.fixed.test", transport)) == 1  # no loadbalance: one order


def test_loadbalance_shuffles_forwarded_answers_too(balanced: ServerProcess) -> None:
    seen = orders(balanced, "multi.example.com", "udp")
    assert len(seen) > 1 and len({frozenset(order) for order in seen}) == 1


# -- bind -------------------------------------------------------------------------------------------

def test_bind_two_blocks_same_zone_same_port_different_addresses(tmp_path: Path) -> None:
    """One port, the same zone in two blocks bound to 127.0.0.2 and 127.0.0.3: each answers its own; the
    port is not open on 127.0.0.1."""
    corefile = """\
bound.test {
    bind 127.0.0.2
    hosts {
        10.5.0.2 which.bound.test
    }
}
bound.test {
    bind 127.0.0.3
    hosts {
        10.5.0.3 which.bound.test
    }
}
"""
    with ServerProcess.from_corefile(tmp_path, corefile, host="127.0.0.2", ready_name="which.bound.test",
                                     ready_type="A") as server:
        for transport in TRANSPORTS:
            assert values(server.ask("which.bound.test", transport=transport)) == ["10.5.0.2"]
            assert values(server.at(host="127.0.0.3").ask("which.bound.test", transport=transport)) == ["10.5.0.3"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


# -- bufsize -------------------------------------------------------------------------------------------

def test_bufsize_512_truncates_big_udp_answers(tmp_path: Path) -> None:
    """40 A records (about 700 bytes): a client offering 4096 bytes gets at most 512 over UDP, whole records
    and TC, from the block with `bufsize 512`; all 40 over TCP; all 40 over UDP from the default block (1232)."""
    addresses = "".join(f"        10.8.0.{i} big.small.test big.default.test\n" for i in range(1, 41))
    corefile = f"small.test {{\n    bufsize 512\n    hosts {{\n{addresses}    }}\n}}\n" \
               f"default.test {{\n    hosts {{\n{addresses}    }}\n}}\n"
    everything = {f"10.8.0.{i}" for i in range(1, 41)}
    with start(tmp_path, corefile, "big.default.test") as server:
        query = dns.message.make_query("big.small.test", "A", use_edns=0, payload=4096)
        wire = dns.query.udp(query, server.host, port=server.port, timeout=5, ignore_trailing=False)
        assert wire.flags & dns.flags.TC
        assert len(wire.to_wire()) <= 512 and set(values(wire)) < everything  # parsed: whole records only
        assert wire.payload == 512  # the size our OPT announces
        assert set(values(server.ask("big.small.test", transport="tcp", use_edns=0, payload=4096))) == everything
        roomy = server.ask("big.default.test", use_edns=0, payload=4096)
        assert not roomy.flags & dns.flags.TC and set(values(roomy)) == everything


# -- errors ------------------------------------------------------------------------------------------

def test_errors_lines_and_consolidate(tmp_path: Path) -> None:
    """An upstream that refuses (a closed port): each SERVFAIL is a `[ERROR] plugin/errors: 2 NAME. TYPE: reason`
    line; in the block with `consolidate`, matching failures become one count per period, at its level.
    A SERVFAIL that is an answer, not an error (hosts lacking a name), is not logged."""
    closed = free_port()
    corefile = """\
each.test {
    errors
    forward . 127.0.0.1:{$CLOSED}
}
counted.test {
    errors {
        consolidate 2s refused warning
    }
    forward . 127.0.0.1:{$CLOSED}
}
ready.test {
    errors
    hosts {
        10.9.0.1 ready.test
    }
}
"""
    with start(tmp_path, corefile, "ready.test", CLOSED=str(closed)) as server:
        # hosts' SERVFAIL for a name it lacks comes without an error (CoreDNS): no line, or it would be the first
        assert rcode(server.ask("missing.ready.test")) == "SERVFAIL"
        assert rcode(server.ask("a.each.test")) == "SERVFAIL"
        assert rcode(server.ask("a.each.test", "AAAA", transport="tcp")) == "SERVFAIL"
        for label in ("a", "b", "c"):
            assert rcode(server.ask(f"{label}.counted.test")) == "SERVFAIL"
        wait_for(lambda: bool(server.log_lines("[WARNING] plugin/errors: ")), DEADLINE, "the consolidated line")
        each = server.log_lines("[ERROR] plugin/errors: ")
        assert [line.split(": ")[1] for line in each] == ["2 a.each.test. A", "2 a.each.test. AAAA"]
        assert all(f"127.0.0.1:{closed}" in line and "refused" in line.lower() for line in each)
        assert server.log_lines("[WARNING] plugin/errors: ") == [
            "[WARNING] plugin/errors: 3 errors like 'refused' occurred in last 2s"]
        assert not [line for line in each if "counted.test" in line]


# -- log -----------------------------------------------------------------------------------------------

LOG = """\
common.test {
    log
    hosts {
        10.10.0.1 www.common.test
    }
}
denial.test {
    log . {
        class denial
    }
    hosts {
        10.10.0.2 www.denial.test
        fallthrough
    }
    kubernetes denial.test {
        fixtures {$ZONES}
    }
}
format.test {
    log . "{proto} Request: {name} {type} {>id} {rcode}"
    hosts {
        10.10.0.3 www.format.test
    }
}
"""


@pytest.fixture(scope="module")
def logging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start(tmp_path_factory.mktemp("log"), LOG, "ready.invalid", ZONES=str(CLUSTER_ZONES)) as server:
        yield server


def logged(server: ServerProcess, pattern: str) -> str:
    """The one query-log line matching `pattern` (a regular expression for the whole line), once written."""
    def find() -> list[str]:
        return [line for line in server.log().splitlines() if re.fullmatch(pattern, line)]

    wait_for(lambda: bool(find()), DEADLINE, f"a log line matching {pattern!r}")
    found = find()
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("transport, edns, bufsize", [("udp", False, "512"), ("udp", True, "1232"),
                                                      ("tcp", False, "65535")])
def test_log_lines_in_coredns_common_format(logging_server: ServerProcess, transport: str, edns: bool,
                                            bufsize: str) -> None:
    """`{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags}
    {rsize} {duration}`, each field checked against the query sent and the reply received."""
    if edns:
        query = dns.message.make_query("www.common.test", "A", use_edns=0, payload=1232, want_dnssec=True)
    else:
        query = dns.message.make_query("www.common.test", "A")
    query.id = {"udp": 40000, "tcp": 41000}[transport] + edns  # one line per parameter set
    server = logging_server
    if transport == "udp":
        reply = dns.query.udp(query, server.host, port=server.port, timeout=5)
    else:
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=5)
    line = logged(server, rf'\[INFO\] 127\.0\.0\.1:\d+ - {query.id} ".*')
    expected = (f'[INFO] 127.0.0.1:PORT - {query.id} "A IN www.common.test. {transport} {len(query.to_wire())} '
                f'{str(edns).lower()} {bufsize}" NOERROR {flags_text(reply)} {len(reply.to_wire())} DURATION')
    assert re.sub(r":\d+ - ", ":PORT - ", re.sub(r" \d+(\.\d+)?s$", " DURATION", line)) == expected


def test_log_class_denial_logs_only_negative_answers(logging_server: ServerProcess) -> None:
    """`class denial`: NXDOMAIN and NODATA are logged, a positive answer is not (the later lines prove it)."""
    server = logging_server
    assert values(server.ask("www.denial.test")) == ["10.10.0.2"]  # hosts: success
    assert rcode(server.ask("nothing.shop.svc.denial.test")) == "NXDOMAIN"  # kubernetes: NXDOMAIN
    assert rcode(server.ask("frontend.shop.svc.denial.test", "TXT")) == "NOERROR"  # kubernetes: NODATA
    logged(server, r'\[INFO\] .* "A IN nothing\.shop\.svc\.denial\.test\. .*" NXDOMAIN .*')
    logged(server, r'\[INFO\] .* "TXT IN frontend\.shop\.svc\.denial\.test\. .*" NOERROR .*')
    assert "www.denial.test" not in server.log()  # logged in order: it would be above those two


def test_log_with_a_format(logging_server: ServerProcess) -> None:
    reply = logging_server.ask("www.format.test")
    logged(logging_server, rf"\[INFO\] udp Request: www\.format\.test\. A {reply.id} NOERROR")


# -- routing ---------------------------------------------------------------------------------------------

def test_routing_longest_zone_wins_and_an_uncovered_name_is_refused(tmp_path: Path) -> None:
    """Three blocks on one port: the most specific zone answers; a name no block covers is REFUSED."""
    corefile = """\
example.com {
    hosts {
        10.6.0.1 a.sub.example.com
        10.6.0.3 www.example.com
    }
}
sub.example.com {
    hosts {
        10.6.0.2 a.sub.example.com
    }
}
other.test {
    hosts {
        10.6.0.4 www.other.test
    }
}
"""
    with start(tmp_path, corefile, "www.example.com") as server:
        for transport in TRANSPORTS:
            assert values(server.ask("a.sub.example.com", transport=transport)) == ["10.6.0.2"]
            assert values(server.ask("www.example.com", transport=transport)) == ["10.6.0.3"]
            assert values(server.ask("www.other.test", transport=transport)) == ["10.6.0.4"]
            mixed = server.ask("A.Sub.Example.COM", transport=transport)
            assert values(mixed) == ["10.6.0.2"] and owners(mixed) == ["a.sub.example.com."]
            assert mixed.question[0].name.to_text() == "A.Sub.Example.COM."
            refused = server.ask("www.example.org", transport=transport)
            assert rcode(refused) == "REFUSED" and not refused.answer


def test_routing_across_ports(tmp_path: Path) -> None:
    """The same zone in blocks on two ports: each port has its own answer."""
    first, second = free_port(), free_port()
    corefile = """\
example.com:{$FIRST} {
    hosts {
        10.7.0.1 www.example.com
    }
}
example.com:{$SECOND} other.test:{$SECOND} {
    hosts {
        10.7.0.2 www.example.com
        10.7.0.3 www.other.test
    }
}
"""
    with ServerProcess.from_corefile(tmp_path, corefile, port=first, ready_name="www.example.com", ready_type="A",
                                     env={"FIRST": str(first), "SECOND": str(second)}) as server:
        other = server.at(port=second)
        for transport in TRANSPORTS:
            assert values(server.ask("www.example.com", transport=transport)) == ["10.7.0.1"]
            assert values(other.ask("www.example.com", transport=transport)) == ["10.7.0.2"]
            assert values(other.ask("www.other.test", transport=transport)) == ["10.7.0.3"]
            assert rcode(server.ask("www.other.test", transport=transport)) == "REFUSED"
