"""`forward` to DNS-over-TLS upstreams (`tls://`), in the real server process, against unbound serving DNS over TLS.

Real parts: our server runs as its own process from a Corefile; the upstream is the real unbound daemon
from Debian serving DNS over TLS (RFC 7858) with a certificate made by openssl for this module
(tests/certificates.py: a CA of its own, which signs the server certificate for `dot.test` and
127.0.0.1); the clients are dnspython over UDP and TCP.  unbound's counters (`num.query.tls`) and
query log show which queries reached it, and over TLS.  Connections are counted by `StreamRelay`,
a TCP relay in front of unbound's TLS port that passes the TLS bytes through unread.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import pytest

from tests.certificates import SERVER_ADDRESS, SERVER_NAME, Certificates, make_certificates
from tests.integration.server import ServerProcess, free_port, wait_for
from tests.integration.upstream import StreamRelay, Unbound, settle

WAIT = 15.0  # for what takes a second or two: generous, for a loaded machine
TRANSPORTS = ["udp", "tcp"]
_serial = itertools.count()

# A block that answers at once, for the start-up probe: forwarded, it would reach unbound.
READY = """\
ready.invalid {
    hosts {
        192.0.2.1 ready.invalid
    }
}
"""


def unique(label: str) -> str:
    """A name no other query asks: unbound answers it from its wildcard `*.wild.example.com` (192.0.2.99)."""
    return f"{label}-{next(_serial)}-{time.monotonic_ns() % 10**9}.wild.example.com"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[Unbound]:
    """unbound serving plain DNS on `port` and DNS over TLS on `tls_port`, with the test CA's certificate."""
    with Unbound(tmp_path_factory.mktemp("unbound-tls"), tls=(certs.server, certs.server_key)) as running:
        yield running


def start(tmp_path: Path, forward: str, **env: str) -> ServerProcess:
    """Our server with `errors` and this forward directive in the root block."""
    corefile = f". {{\n    errors\n    {forward}\n}}\n" + READY
    return ServerProcess.from_corefile(tmp_path, corefile, env=env, ready_name="ready.invalid", ready_type="A")


def tls_queries(unbound: Unbound) -> float:
    return unbound.stats().get("num.query.tls", 0)


def error_lines(server: ServerProcess, name: str) -> list[str]:
    return server.log_lines(f"[ERROR] plugin/errors: 2 {name}. A: ")


@pytest.mark.parametrize("forward", [
    "forward . tls://{host}:{port} {{\n        tls {ca}\n        tls_servername {name}\n    }}",
    "forward . tls://{host}:{port} {{\n        tls {ca}\n    }}",  # the IP is the name: the certificate has it
    "forward . tls://{host}%{name}:{port} {{\n        tls {ca}\n    }}",
], ids=["tls_servername", "the-ip", "per-to-name"])
def test_answers_come_over_tls_whether_the_client_asks_over_udp_or_tcp(tmp_path: Path, unbound: Unbound,
                                                                       certs: Certificates, forward: str) -> None:
    directive = forward.format(host=SERVER_ADDRESS, port=unbound.tls_port, ca=certs.ca, name=SERVER_NAME)
    with start(tmp_path, directive) as server:
        before = tls_queries(unbound)
        for transport in TRANSPORTS:
            reply = server.ask(unique(f"dot-{transport}"), transport=transport)
            assert reply.rcode() == dns.rcode.NOERROR
            assert [rr.to_text() for rr in reply.answer[0]] == ["192.0.2.99"]
        assert tls_queries(unbound) == before + 2  # both went over TLS, the UDP client's too


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_wrong_server_name_is_servfail_and_the_query_is_never_sent(tmp_path: Path, unbound: Unbound,
                                                                     certs: Certificates, transport: str) -> None:
    directive = (f"forward . tls://{SERVER_ADDRESS}:{unbound.tls_port} {{\n        tls {certs.ca}\n"
                 "        tls_servername wrong.test\n    }")
    with start(tmp_path, directive) as server:
        name = unique("wrong-name")
        reply = server.ask(name, transport=transport)
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
        wait_for(lambda: bool(error_lines(server, name)), WAIT, "the error line")
        (line,) = error_lines(server, name)
        assert f"tcp-tls {SERVER_ADDRESS}:{unbound.tls_port}: tls: failed to verify certificate: " in line
        assert "wrong.test" in line
    settle(unbound)
    assert not unbound.has_seen(name, "A")


@pytest.mark.parametrize("options", ["", " {\n        tls\n    }"], ids=["no-tls-line", "bare-tls"])
def test_a_certificate_the_trust_store_does_not_vouch_for_is_servfail_never_an_answer(
        tmp_path: Path, unbound: Unbound, options: str) -> None:
    """No `tls CA`: the system's trust store, which does not know the test CA."""
    with start(tmp_path, f"forward . tls://{SERVER_ADDRESS}:{unbound.tls_port}{options}") as server:
        for transport in TRANSPORTS:
            name = unique(f"untrusted-{transport}")
            reply = server.ask(name, transport=transport)
            assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
            wait_for(lambda: bool(error_lines(server, name)), WAIT, "the error line")
            assert "tls: failed to verify certificate: unable to get local issuer certificate" in \
                   error_lines(server, name)[0]
            settle(unbound)
            assert not unbound.has_seen(name, "A")


def test_the_system_trust_store_is_the_one_ssl_cert_file_names(tmp_path: Path, unbound: Unbound,
                                                                certs: Certificates) -> None:
    """As OpenSSL's default paths: SSL_CERT_FILE in the server's environment puts the test CA in the store."""
    directive = f"forward . tls://{SERVER_ADDRESS}:{unbound.tls_port}"
    with start(tmp_path, directive, SSL_CERT_FILE=str(certs.ca)) as server:
        reply = server.ask(unique("ssl-cert-file"))
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer


def test_one_connection_carries_many_queries_and_a_closed_one_is_replaced_at_once(
        tmp_path: Path, unbound: Unbound, certs: Certificates) -> None:
    with StreamRelay((SERVER_ADDRESS, unbound.tls_port)) as relay:
        directive = (f"forward . tls://{SERVER_ADDRESS}:{relay.port} {{\n        tls {certs.ca}\n"
                     f"        tls_servername {SERVER_NAME}\n    }}")
        with start(tmp_path, directive) as server:
            for transport in ["udp", "tcp", "udp", "tcp"]:
                assert server.ask(unique("reused"), transport=transport).answer
            assert relay.accepted == 1
            relay.close_on_next_data()  # the upstream drops the idle connection as it is used again
            name = unique("after-close")
            reply = server.ask(name)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
            assert relay.accepted == 2
            assert not error_lines(server, name)


def test_an_idle_connection_is_closed_after_expire(tmp_path: Path, unbound: Unbound, certs: Certificates) -> None:
    """unbound keeps an idle connection 30 s (`tcp-idle-timeout`): one that ends well before is closed by us."""
    with StreamRelay((SERVER_ADDRESS, unbound.tls_port)) as relay:
        directive = (f"forward . tls://{SERVER_ADDRESS}:{relay.port} {{\n        tls {certs.ca}\n"
                     f"        tls_servername {SERVER_NAME}\n        expire 300ms\n    }}")
        with start(tmp_path, directive) as server:
            assert server.ask(unique("expire")).answer
            wait_for(lambda: relay.closed == 1, WAIT, "our server to close the idle connection")
            assert server.ask(unique("expire-again")).answer
            assert relay.accepted == 2


def test_plain_and_tls_tos_work_side_by_side(tmp_path: Path, unbound: Unbound, certs: Certificates) -> None:
    """round_robin alternates: half the queries go to unbound's plain port, half over TLS."""
    directive = (f"forward . {SERVER_ADDRESS}:{unbound.port} tls://{SERVER_ADDRESS}:{unbound.tls_port} {{\n"
                 f"        tls {certs.ca}\n        tls_servername {SERVER_NAME}\n        policy round_robin\n    }}")
    with start(tmp_path, directive) as server:
        stats = unbound.stats()
        for transport in ["udp", "udp", "tcp", "tcp"]:
            assert server.ask(unique("mixed"), transport=transport).answer
        after = unbound.stats()
        assert after["total.num.queries"] == stats["total.num.queries"] + 4
        assert after.get("num.query.tls", 0) == stats.get("num.query.tls", 0) + 2


def test_a_tls_upstream_marked_down_is_health_checked_over_tls(tmp_path: Path, unbound: Unbound,
                                                                certs: Certificates) -> None:
    """The relay first leads nowhere (a port nobody listens on), then to unbound's TLS port."""
    with StreamRelay((SERVER_ADDRESS, free_port())) as relay:
        directive = (f"forward . tls://{SERVER_ADDRESS}:{relay.port} {{\n        tls {certs.ca}\n"
                     f"        tls_servername {SERVER_NAME}\n        max_fails 1\n        health_check 100ms\n    }}")
        with start(tmp_path, directive) as server:
            name = unique("down")
            assert server.ask(name).rcode() == dns.rcode.SERVFAIL
            wait_for(lambda: bool(error_lines(server, name)), WAIT, "the error line")
            assert error_lines(server, name)[0].split(f"tcp-tls {SERVER_ADDRESS}:{relay.port}: ")[1]  # says why
            wait_for(lambda: "marked down" in server.log(), WAIT, "the upstream to be marked down")
            settle(unbound)
            probes, tls = unbound.count(".", "NS"), tls_queries(unbound)
            relay.target = (SERVER_ADDRESS, unbound.tls_port)
            wait_for(lambda: "answers again" in server.log(), WAIT, "a probe to find the upstream back")
            settle(unbound)
            assert unbound.count(".", "NS") > probes and tls_queries(unbound) > tls  # the probe came over TLS
            assert server.ask(unique("back")).answer
