"""nsid: its directive, and the NSID option in replies through the router (local, cached and forwarded)."""

from __future__ import annotations

import asyncio
import socket

import dns.edns
import dns.message
import dns.rcode
import pytest

from dns_server.config.corefile import parse_text
from dns_server.config.model import ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.serving.router import Forward, Pipeline
from tests.doubles import pipeline_for

Z = "cluster.local"
KUBERNETES = f"kubernetes.default.svc.{Z}"  # the example cluster's ClusterIP 10.96.0.1


def block_of(nsid: str, *, extra: str = "") -> ServerBlock:
    text = f". {{\n    {nsid}\n    kubernetes {Z}\n    forward . 192.0.2.53\n    cache\n{extra}}}\n"
    return build_config(parse_text(text)).blocks[0]


def ask(pipeline: Pipeline, name: str, *, nsid: bool = True, via_tcp: bool = False) -> dns.message.Message:
    """The reply to `name A` with EDNS, asking for the NSID when `nsid`, finished as the transport does."""
    options: list[dns.edns.Option] = [dns.edns.GenericOption(dns.edns.NSID, b"")] if nsid else []
    query = dns.message.make_query(name, "A", use_edns=0, options=options)
    reply = pipeline.handle(query.to_wire(), via_tcp)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def nsid_of(reply: dns.message.Message) -> list[bytes]:
    return [option.to_wire() for option in reply.options if option.otype == dns.edns.NSID]


@pytest.mark.parametrize("line, expected", [
    ("nsid", socket.gethostname().encode()),
    ("nsid localdns", b"localdns"),
    ("nsid Use The Force", b"Use The Force"),
])
def test_nsid_reads_its_data_or_takes_the_host_name(line: str, expected: bytes) -> None:
    assert block_of(line).setting("nsid") == expected


@pytest.mark.parametrize("text, message", [
    ("nsid a\n    nsid b", "Corefile:3 - Error during parsing: this plugin can only be used once per Server Block"),
    ("nsid a {\n        b\n    }", "Corefile:3 - Error during parsing: unknown property 'b'"),
])
def test_a_bad_nsid_directive_is_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CorefileError, match="plugin/nsid: " + message):
        block_of(text)


def test_a_local_answer_carries_the_nsid_only_when_the_query_asks() -> None:
    pipeline = pipeline_for(settings=block_of("nsid Use The Force"))
    for _ in range(2):  # the second from the answer table (and the exact replies)
        asked = ask(pipeline, KUBERNETES)
        assert asked.rcode() == dns.rcode.NOERROR and asked.answer[0][0].address == "10.96.0.1"
        assert nsid_of(asked) == [b"Use The Force"]
        plain = ask(pipeline, KUBERNETES, nsid=False)
        assert plain.answer == asked.answer and nsid_of(plain) == []
        assert nsid_of(ask(pipeline, f"missing.default.svc.{Z}")) == [b"Use The Force"]  # NXDOMAIN too


def test_a_forwarded_reply_carries_the_nsid_from_upstream_and_from_the_cache() -> None:
    pipeline = pipeline_for(settings=block_of("nsid localdns"))
    for _ in range(2):  # the second from the forward cache
        asked = ask(pipeline, "www.example.com")
        assert asked.answer and nsid_of(asked) == [b"localdns"]
        assert nsid_of(ask(pipeline, "www.example.com", nsid=False)) == []


def test_without_nsid_no_reply_carries_one() -> None:
    pipeline = pipeline_for(settings=block_of("errors"))
    assert nsid_of(ask(pipeline, KUBERNETES)) == [] and nsid_of(ask(pipeline, "www.example.com")) == []


def test_a_reply_the_server_writes_itself_carries_none() -> None:
    """A name no block serves gets REFUSED before any plugin runs, as in CoreDNS."""
    settings = build_config(parse_text(f"{Z} {{\n    nsid x\n    kubernetes {Z}\n}}\n")).blocks[0]
    pipeline = pipeline_for(settings=settings)
    refused = ask(pipeline, "www.example.com")
    assert refused.rcode() == dns.rcode.REFUSED and nsid_of(refused) == []
    assert nsid_of(ask(pipeline, KUBERNETES)) == [b"x"]
