"""chaos and whoami: their directives, their answers through the router, and the class gate they open."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rcode
import pytest
from dnslib import DNSRecord

from dns_server.config.corefile import parse_text
from dns_server.config.model import ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.plugins.chaos import DEFAULT_VERSION, ChaosSettings
from dns_server.serving.router import Pipeline
from tests.doubles import pipeline_for


def block_of(text: str) -> ServerBlock:
    return build_config(parse_text(text)).blocks[0]


def chaos_of(arguments: str) -> ChaosSettings:
    settings: ChaosSettings = block_of(f". {{\n    chaos {arguments}\n}}\n").setting("chaos")
    return settings


def ask(pipeline: Pipeline, name: str, qtype: str = "TXT", rdclass: str = "CH", *, via_tcp: bool = False,
        peer: tuple[str, int] | None = ("192.0.2.7", 40000)) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, rdclass=rdclass, use_edns=0)
    reply = pipeline.handle(query.to_wire(), via_tcp, peer)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


# -- chaos ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, expected", [
    ("", ChaosSettings(DEFAULT_VERSION, ())),
    ("v1", ChaosSettings("v1", ())),
    ("v1 bob alice bob", ChaosSettings("v1", ("alice", "bob"))),
    ("x" * 300, ChaosSettings("x" * 255, ())),
    ("x" * 300 + " " + "a" * 300, ChaosSettings("x" * 300, ("a" * 255,))),  # CoreDNS trims a lone VERSION only
])
def test_chaos_reads_a_version_and_distinct_authors(arguments: str, expected: ChaosSettings) -> None:
    assert chaos_of(arguments) == expected


@pytest.mark.parametrize("text, message", [
    (". {\n    chaos v1 {\n        authors x\n    }\n}\n", "Corefile:3 - Error during parsing: unknown property 'authors'"),
    (". {\n    chaos v1\n    chaos v2\n}\n", "Corefile:3 - Error during parsing: this plugin can only be used once"),
])
def test_a_bad_chaos_directive_is_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CorefileError, match="plugin/chaos: " + message):
        block_of(text)


def test_chaos_answers_who_and_what_in_class_ch_without_aa() -> None:
    pipeline = pipeline_for([], settings=block_of(". {\n    chaos MyDNS-1 bob alice\n}\n"))
    for name in ("version.bind.", "Version.Server."):
        reply = ask(pipeline, name)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AA
        (rrset,) = reply.answer
        assert (rrset.name.to_text(), rrset.rdclass, rrset.rdtype, rrset.ttl) == (name, dns.rdataclass.CH,
                                                                                  dns.rdatatype.TXT, 0)
        assert [r.strings for r in rrset] == [(b"MyDNS-1",)]
    assert sorted(r.strings for r in ask(pipeline, "authors.bind.").answer[0]) == [(b"alice",), (b"bob",)]
    for name in ("hostname.bind.", "id.server."):
        assert [r.strings for r in ask(pipeline, name).answer[0]] == [(socket.gethostname().encode(),)]


@pytest.mark.parametrize("name, qtype, rdclass", [("version.bind.", "A", "CH"), ("version.bind.", "TXT", "IN"),
                                                  ("other.bind.", "TXT", "CH")])
def test_chaos_passes_every_other_question_on(name: str, qtype: str, rdclass: str) -> None:
    """The next plugin gets it: here none, so CoreDNS's SERVFAIL "no next plugin found"."""
    pipeline = pipeline_for([], settings=block_of(". {\n    chaos\n}\n"))
    reply = ask(pipeline, name, qtype, rdclass)
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


def test_a_class_other_than_in_is_refused_unless_a_plugin_takes_it() -> None:
    """CoreDNS opens classes other than IN only to listeners with chaos or forward."""
    closed = pipeline_for([], settings=block_of(". {\n    whoami\n}\n"))
    assert ask(closed, "version.bind.").rcode() == dns.rcode.REFUSED
    open_ = pipeline_for([], settings=block_of(". {\n    chaos\n    whoami\n}\n"))
    query = dns.message.make_query("example.org.", "A", rdclass="CH")
    reply = open_.handle(query.to_wire(), False, ("192.0.2.7", 40000))
    assert isinstance(reply, bytes)
    parsed = DNSRecord.parse(reply)  # dnspython reads a CH-class A as a Chaosnet address: dnslib reads it raw
    # chaos passes it on; whoami answers, in the question's class
    assert parsed.header.rcode == dns.rcode.NOERROR and [rr.rclass for rr in parsed.ar] == [dns.rdataclass.CH] * 2


# -- whoami -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer, via_tcp, rtype, address, srv", [
    (("192.0.2.7", 40000), False, dns.rdatatype.A, "192.0.2.7", "_udp.Who.Example."),
    (("2001:db8::7", 53000), True, dns.rdatatype.AAAA, "2001:db8::7", "_tcp.Who.Example."),
    (("::ffff:192.0.2.8", 1234), False, dns.rdatatype.A, "192.0.2.8", "_udp.Who.Example."),
])
def test_whoami_tells_the_client_its_address_port_and_transport(peer: tuple[str, int], via_tcp: bool, rtype: int,
                                                                address: str, srv: str) -> None:
    pipeline = pipeline_for([], settings=block_of(". {\n    whoami\n}\n"))
    reply = ask(pipeline, "Who.Example.", "A", "IN", via_tcp=via_tcp, peer=peer)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA and not reply.answer
    first, second = reply.additional[:2]
    assert (first.name.to_text(), first.rdtype, first.ttl, first[0].address) == ("Who.Example.", rtype, 0, address)
    assert (second.name.to_text(), second.rdtype, second.ttl) == (srv, dns.rdatatype.SRV, 0)
    assert (second[0].priority, second[0].weight, second[0].port, second[0].target.to_text()) == (0, 0, peer[1], ".")


def test_whoami_at_the_root_names_its_srv_record_under_the_root() -> None:
    pipeline = pipeline_for([], settings=block_of(". {\n    whoami\n}\n"))
    assert ask(pipeline, ".", "A", "IN").additional[1].name.to_text() == "_udp."


def test_whoamis_answer_is_never_served_to_another_client() -> None:
    """The same question from two clients, over and over: each always gets its own address and port."""
    pipeline = pipeline_for([], settings=block_of(". {\n    whoami\n}\n"))
    for _ in range(3):
        for peer in (("192.0.2.1", 1111), ("192.0.2.2", 2222)):
            reply = ask(pipeline, "who.example.", "A", "IN", peer=peer)
            assert (reply.additional[0][0].address, reply.additional[1][0].port) == peer
    assert not pipeline.table.entries


def test_names_the_blocks_kubernetes_answers_never_reach_whoami() -> None:
    settings = block_of(". {\n    kubernetes cluster.local\n    whoami\n}\n")
    pipeline = pipeline_for(settings=settings)
    reply = ask(pipeline, "kubernetes.default.svc.cluster.local.", "A", "IN")
    assert reply.answer and not reply.additional[1:]
    assert ask(pipeline, "example.org.", "A", "IN").additional[0][0].address == "192.0.2.7"
