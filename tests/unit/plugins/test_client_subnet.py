"""The client's address behind a node-local cache: `forward { client_subnet }` on the cache, `trust_client_subnet`
on the cluster server (EDNS Client Subnet, RFC 7871), through the real routers of both."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dns_server.config.syntax import CorefileError
from dns_server.protocol import client_subnet
from dns_server.serving.router import Forward, Pipeline
from tests.cluster_data import registry_with
from tests.doubles import FakeForwarder, fakes, pipeline_for
from tests.unit.plugins.test_autopath import (
    COREFILE,
    DATA_POD,
    FOUND,
    SEARCHED,
    SHOP_POD,
    SHOP_POD_2,
    block_of,
    cluster,
    pod,
)

NODE_CACHE = "10.0.0.9"  # the node-local cache's own address, as the cluster server sees it
TRUSTING = COREFILE.replace("    autopath @kubernetes\n",
                            "    autopath @kubernetes\n    trust_client_subnet 10.0.0.0/24\n")
NODE_LOCAL = """cluster.local {
    cache 30
    forward . 10.0.0.10 {
        force_tcp
        client_subnet
    }
}
"""


def cluster_server(corefile: str = TRUSTING) -> Pipeline:
    return pipeline_for(settings=block_of(corefile),
                        registry=registry_with(cluster(pod("shop", "web-0", SHOP_POD), pod("data", "pg-0", DATA_POD))))


def send(pipeline: Pipeline, query: dns.message.Message, peer: str, via_tcp: bool = False) -> dns.message.Message:
    reply = pipeline.handle(query.to_wire(), via_tcp, (peer, 40000))
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def for_client(name: str, address: str, prefix: int = 32, **options: Any) -> dns.message.Message:
    return dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(address, prefix)], **options)


def subnet(reply: dns.message.Message) -> tuple[str, int, int] | None:
    found = [option for option in reply.options if isinstance(option, dns.edns.ECSOption)]
    return (found[0].address, found[0].srclen, found[0].scopelen) if found else None


def answer_of(reply: dns.message.Message) -> list[tuple[str, str]]:
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) for rrset in reply.answer]


# -- the directives ------------------------------------------------------------------------------------------

def test_trust_client_subnet_reads_networks_and_addresses() -> None:
    block = block_of(". {\n    trust_client_subnet 10.0.0.0/8 fd00::/64 169.254.20.10\n}\n")
    assert [str(network) for network in block.setting("trust_client_subnet")] == [
        "10.0.0.0/8", "fd00::/64", "169.254.20.10/32"]


@pytest.mark.parametrize("text, message", [
    ("trust_client_subnet", "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending "
                            "after 'trust_client_subnet'"),
    ("trust_client_subnet 10.0.0.1/8", "Corefile:2 - Error during parsing: not a network .*host bits set"),
    ("trust_client_subnet nodelocal", "Corefile:2 - Error during parsing: not a network"),
    ("trust_client_subnet 10.0.0.0/8 {\n        ttl 5\n    }", "Corefile:3 - Error during parsing: unknown property"),
    ("trust_client_subnet 10.0.0.0/8\n    trust_client_subnet 10.1.0.0/16",
     "Corefile:3 - Error during parsing: this plugin can only be used once"),
])
def test_a_bad_trust_client_subnet_is_refused_at_start_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CorefileError, match="plugin/trust_client_subnet: " + message):
        block_of(f". {{\n    {text}\n}}\n")


def test_forward_reads_client_subnet_and_refuses_arguments_to_it() -> None:
    assert block_of(NODE_LOCAL).setting("forward")[0].client_subnet
    assert not block_of(NODE_LOCAL.replace("        client_subnet\n", "")).setting("forward")[0].client_subnet
    with pytest.raises(CorefileError, match="plugin/forward: Corefile:5 - Error during parsing: Wrong argument count "
                                            "or unexpected line ending after '24'"):
        block_of(NODE_LOCAL.replace("client_subnet", "client_subnet 24"))


# -- the cluster server ----------------------------------------------------------------------------------------

def test_a_trusted_caches_option_names_the_pod_and_the_reply_echoes_it_with_its_scope() -> None:
    reply = send(cluster_server(), for_client(SEARCHED, SHOP_POD), NODE_CACHE)
    assert answer_of(reply) == [(SEARCHED, "CNAME"), (FOUND, "A")]
    assert subnet(reply) == (SHOP_POD, 32, 32)  # for this client only


def test_a_kept_namespace_answer_echoes_the_option_of_the_pod_asking_now() -> None:
    """A second shop pod behind the cache gets the walked answer from the table, scoped to its own address."""
    server = pipeline_for(settings=block_of(TRUSTING), registry=registry_with(cluster(
        pod("shop", "web-0", SHOP_POD), pod("shop", "web-1", SHOP_POD_2), pod("data", "pg-0", DATA_POD))))
    send(server, for_client(SEARCHED, SHOP_POD), NODE_CACHE)
    hits = server.table.counters.hits
    reply = send(server, for_client(SEARCHED, SHOP_POD_2), NODE_CACHE)
    assert answer_of(reply) == [(SEARCHED, "CNAME"), (FOUND, "A")] and server.table.counters.hits == hits + 1
    assert subnet(reply) == (SHOP_POD_2, 32, 32)
    reply = send(server, for_client(SEARCHED, DATA_POD), NODE_CACHE)
    assert reply.rcode() == dns.rcode.NXDOMAIN and subnet(reply) == (DATA_POD, 32, 32)


def test_an_untrusted_senders_option_is_ignored_and_not_echoed() -> None:
    reply = send(cluster_server(), for_client(SEARCHED, SHOP_POD), "10.0.1.9")
    assert reply.rcode() == dns.rcode.NXDOMAIN and subnet(reply) is None


def test_without_the_directive_no_sender_is_trusted() -> None:
    reply = send(cluster_server(COREFILE), for_client(SEARCHED, SHOP_POD), NODE_CACHE)
    assert reply.rcode() == dns.rcode.NXDOMAIN and subnet(reply) is None


def test_only_a_whole_address_names_a_client() -> None:
    reply = send(cluster_server(), for_client(SEARCHED, "10.244.1.0", 24), NODE_CACHE)
    assert reply.rcode() == dns.rcode.NXDOMAIN and subnet(reply) is None


def test_an_answer_for_every_client_carries_no_option_which_means_scope_zero() -> None:
    reply = send(cluster_server(), for_client(FOUND, SHOP_POD), NODE_CACHE)
    assert answer_of(reply) == [(FOUND, "A")] and subnet(reply) is None


def test_whoami_sees_the_client_the_option_names() -> None:
    server = cluster_server(". {\n    whoami\n    trust_client_subnet 10.0.0.0/24\n}\n")
    reply = send(server, for_client("who.example.", "fd00::7", 128), NODE_CACHE)
    assert [(dns.rdatatype.to_text(rrset.rdtype), rrset[0].to_text()) for rrset in reply.additional] == [
        ("AAAA", "fd00::7"), ("SRV", "0 0 0 .")]  # the option carries no port
    assert subnet(reply) == ("fd00::7", 128, 128)


# -- the node-local cache ------------------------------------------------------------------------------------

def node_local_over(server: Pipeline) -> Pipeline:
    """A node-local cache whose upstream is `server`'s router, which sees every query coming from NODE_CACHE."""
    def upstream(query: dns.message.Message) -> bytes:
        reply = server.handle(query.to_wire(), True, (NODE_CACHE, 53000))
        assert isinstance(reply, bytes)
        return reply
    settings = block_of(NODE_LOCAL)
    return pipeline_for(settings=settings, forwarders=[FakeForwarder(settings.setting("forward")[0], upstream)])


def test_the_node_local_cache_passes_each_clients_address_upstream() -> None:
    node_local = node_local_over(cluster_server())
    send(node_local, dns.message.make_query(SEARCHED, "A"), SHOP_POD)
    assert subnet(fakes(node_local)[0].queries[0]) == (SHOP_POD, 32, 0)


def test_through_the_node_local_cache_each_pod_gets_its_own_namespaces_answer() -> None:
    node_local = node_local_over(cluster_server())
    searched_from_data = "frontend.shop.svc.data.svc.cluster.local."
    assert answer_of(send(node_local, dns.message.make_query(SEARCHED, "A"), SHOP_POD)) == [
        (SEARCHED, "CNAME"), (FOUND, "A")]
    assert send(node_local, dns.message.make_query(SEARCHED, "A"), DATA_POD).rcode() == dns.rcode.NXDOMAIN
    assert answer_of(send(node_local, dns.message.make_query(searched_from_data, "A"), DATA_POD)) == [
        (searched_from_data, "CNAME"), (FOUND, "A")]
    assert answer_of(send(node_local, dns.message.make_query(SEARCHED, "A"), SHOP_POD))[0] == (SEARCHED, "CNAME")
    assert len(fakes(node_local)[0].asked) == 4  # a reply scoped to one client is never cached


def test_a_reply_for_every_client_is_cached_once_for_all() -> None:
    node_local = node_local_over(cluster_server())
    for client in (SHOP_POD, DATA_POD, SHOP_POD):
        assert answer_of(send(node_local, dns.message.make_query(FOUND, "A"), client)) == [(FOUND, "A")]
    assert fakes(node_local)[0].asked == [FOUND]


def test_the_node_local_cache_does_not_pass_the_option_on_to_its_client() -> None:
    node_local = node_local_over(cluster_server())
    reply = send(node_local, dns.message.make_query(SEARCHED, "A", use_edns=0), SHOP_POD)
    assert reply.edns == 0 and subnet(reply) is None


# -- the option itself ---------------------------------------------------------------------------------------

def test_the_option_is_what_dnspython_reads_as_client_subnet() -> None:
    option = client_subnet.option("10.244.1.5", scoped=True)
    parsed = dns.edns.option_from_wire(dns.edns.ECS, option, 4, len(option) - 4)
    assert isinstance(parsed, dns.edns.ECSOption)
    assert (parsed.address, parsed.srclen, parsed.scopelen) == ("10.244.1.5", 32, 32)


def test_a_malformed_option_names_no_client() -> None:
    wire = bytearray(for_client(SEARCHED, SHOP_POD).to_wire())
    wire[-7] = 3  # FAMILY 3: no address family RFC 7871 knows
    assert client_subnet.client_address(bytes(wire)) is None
    assert client_subnet.client_address(for_client(SEARCHED, SHOP_POD).to_wire()) == SHOP_POD


def test_two_clients_asking_at_once_are_asked_for_each_not_shared() -> None:
    node_local = node_local_over(cluster_server())
    forwarder = fakes(node_local)[0]

    async def both() -> list[bytes | None]:
        forwarder.gate = asyncio.Event()
        pending = []
        for client in (SHOP_POD, DATA_POD):
            forward = node_local.handle(dns.message.make_query(SEARCHED, "A").to_wire(), False, (client, 40000))
            assert isinstance(forward, Forward)
            pending.append(asyncio.ensure_future(node_local.complete(forward)))
        await asyncio.sleep(0)
        forwarder.gate.set()
        return list(await asyncio.gather(*pending))

    shop, data = (dns.message.from_wire(reply) for reply in asyncio.run(both()) if reply is not None)
    assert [subnet(query) for query in forwarder.queries] == [(SHOP_POD, 32, 0), (DATA_POD, 32, 0)]
    assert answer_of(shop)[0] == (SEARCHED, "CNAME") and data.rcode() == dns.rcode.NXDOMAIN
