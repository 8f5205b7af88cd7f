"""rewrite edns0 in the real server process: the options its rules make, as the upstream receives them.

Real parts: the server runs as its own process from a Corefile and is asked by dnspython over UDP
and TCP; the upstream is `Recorder` (tests/integration/upstream.py), a small DNS server on a
loopback port that parses every query it gets with dnspython, since a real resolver (unbound) does
not show the EDNS options of the queries it answers.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import dns.edns
import dns.query
import dns.message
import dns.rcode
import pytest

from tests.integration.server import ServerProcess
from tests.integration.upstream import Recorder

COREFILE = """\
example.com {
    bind 127.0.0.1
    rewrite continue edns0 local set 0xffee {client_port}
    rewrite continue edns0 local set 0xffef {server_ip}
    rewrite continue edns0 local set 0xfff0 {protocol}
    rewrite continue edns0 nsid set
    rewrite edns0 subnet set 24 56
    forward . {$UPSTREAM}
    cache
}
example.org {
    bind 127.0.0.1
    rewrite edns0 local set 0xffee 0x61626364
    forward . {$UPSTREAM}
    cache
}
example.net {
    bind 127.0.0.1
    rewrite edns0 subnet set 16 56
    forward . {$UPSTREAM} {
        client_subnet
    }
}
"""
TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: Recorder) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("rewrite-edns0")
    with ServerProcess.from_corefile(directory, COREFILE, env={"UPSTREAM": upstream.address},
                                     ready_name="ready.example.org", ready_type="TXT") as running:
        yield running


def options(query: dns.message.Message) -> list[tuple[int, bytes]]:
    return [(int(option.otype), option.to_wire()) for option in query.options]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_upstream_gets_the_options_the_rules_made_for_this_client(server: ServerProcess, upstream: Recorder,
                                                                      transport: str) -> None:
    name = f"{transport}.example.com"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        query = dns.message.make_query(name, "A", use_edns=0)
        if transport == "udp":
            sock.settimeout(5.0)
            reply = dns.query.udp(query, server.host, timeout=5.0, port=server.port, sock=sock)
        else:
            sock.connect((server.host, server.port))
            reply = dns.query.tcp(query, server.host, timeout=5.0, port=server.port, sock=sock)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.to_text() for rrset in reply.answer] == [f"{name}. 300 IN A {Recorder.ADDRESS}"]
    assert not reply.options  # the upstream's options never reach the client
    (sent,) = upstream.received(f"{name}.")
    assert options(sent) == [(0xFFEE, port.to_bytes(2, "big")), (0xFFEF, bytes((127, 0, 0, 1))),
                             (0xFFF0, transport.encode()), (3, b""), (8, b"\x00\x01\x18\x00\x7f\x00\x00")]


def test_a_client_dependent_option_is_asked_for_each_client(server: ServerProcess, upstream: Recorder) -> None:
    """{client_port} differs between two queries from two sockets: neither is served the other's answer."""
    for _ in range(2):
        assert server.ask("twice.example.com", "A").rcode() == dns.rcode.NOERROR
    ports = {options(query)[0][1] for query in upstream.received("twice.example.com.")}
    assert len(ports) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_constant_option_is_asked_once_and_the_answer_kept_for_everyone(server: ServerProcess, upstream: Recorder,
                                                                           transport: str) -> None:
    name = f"constant-{transport}.example.org"
    for _ in range(3):
        reply = server.ask(name, "A", transport)
        assert [rrset.to_text() for rrset in reply.answer] == [f"{name}. 300 IN A {Recorder.ADDRESS}"]
    (sent,) = upstream.received(f"{name}.")
    assert options(sent) == [(0xFFEE, b"abcd")]


def test_a_client_that_sends_the_option_itself_gets_it_replaced(server: ServerProcess, upstream: Recorder) -> None:
    mine = dns.edns.GenericOption(dns.edns.OptionType(0xFFEE), b"mine")
    reply = server.ask("mine.example.org", "A", use_edns=0, options=[mine])
    assert reply.rcode() == dns.rcode.NOERROR
    (sent,) = upstream.received("mine.example.org.")
    assert options(sent) == [(0xFFEE, b"abcd")]


def test_a_bad_edns0_rule_stops_the_start_naming_its_line(tmp_path: Path) -> None:
    corefile = ". {\n    forward . 192.0.2.53\n    rewrite edns0 local set 0xffee {client_mac}\n}\n"
    server = ServerProcess.from_corefile(tmp_path, corefile)
    assert server.refused_start(10.0) == 1
    assert server.log() == (f"dns-server: error: plugin/rewrite: {tmp_path}/Corefile:3 - Error during parsing: "
                            'unsupported variable name "{client_mac}"\n')


def test_a_subnet_rule_wins_over_forwards_own_client_subnet(server: ServerProcess, upstream: Recorder) -> None:
    """`forward { client_subnet }` (ours) adds no second client-subnet option to a query whose subnet a rule wrote."""
    assert server.ask("subnet.example.net", "A").rcode() == dns.rcode.NOERROR
    (sent,) = upstream.received("subnet.example.net.")
    assert options(sent) == [(8, b"\x00\x01\x10\x00\x7f\x00")]
