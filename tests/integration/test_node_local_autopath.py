"""autopath behind a node-local cache (CoreDNS issue 4308), with two real server processes.

The node-local cache is our server with NodeLocal DNSCache's Corefile shape (`cache`, `forward` over
TCP to the cluster DNS) plus `client_subnet`; the cluster server runs autopath and trusts the cache's
address (127.0.0.1, where its TCP connections come from) with `trust_client_subnet`.  Pods are
loopback addresses the fixtures know: 127.0.0.5 in `shop`, 127.0.0.6 in `data`; dnspython asks from
each as its source address.  Behind CoreDNS's node-local cache every query would come from the cache's
address, and the pod's search path would never be walked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.integration.server import QUERY_TIMEOUT, ServerProcess

SHOP_POD, DATA_POD, STRANGER = "127.0.0.5", "127.0.0.6", "127.0.0.7"
CLUSTER = """cluster.local {
    kubernetes cluster.local {
        fixtures cluster
        pods verified
    }
    autopath @kubernetes
    trust_client_subnet 127.0.0.1/32
}
"""
NODE_LOCAL = """cluster.local {
    cache {
        success 9984 30
        denial 9984 5
    }
    forward . 127.0.0.1:{$CLUSTER_PORT} {
        force_tcp
        client_subnet
    }
}
"""


def pod(namespace: str, name: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"containers": [{"name": name, "image": name}]},
            "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}}


MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "data"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "frontend", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    pod("shop", "web-0", SHOP_POD),
    pod("data", "pg-0", DATA_POD),
]
FOUND = "frontend.shop.svc.cluster.local."
FROM_SHOP = "frontend.shop.svc.shop.svc.cluster.local."  # `frontend.shop` under the shop pod's first search domain
FROM_DATA = "frontend.shop.svc.data.svc.cluster.local."


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    directory: Path = tmp_path_factory.mktemp("cluster")
    (directory / "cluster").mkdir()
    (directory / "cluster" / "pods.yaml").write_text(yaml.safe_dump_all(MANIFESTS))
    node_directory: Path = tmp_path_factory.mktemp("node-local")
    with ServerProcess.from_corefile(directory, CLUSTER, ready_name=FOUND, ready_type="A") as cluster:
        node_local = ServerProcess.from_corefile(node_directory, NODE_LOCAL, ready_name=FOUND, ready_type="A",
                                                 env={"CLUSTER_PORT": str(cluster.port)})
        with node_local:
            yield cluster, node_local


def ask(server: ServerProcess, name: str, source: str, via_tcp: bool = False,
        options: list[dns.edns.Option] | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0, options=options or [])
    if via_tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=QUERY_TIMEOUT, source=source)
    return dns.query.udp(query, server.host, port=server.port, timeout=QUERY_TIMEOUT, source=source)


def answer_of(reply: dns.message.Message) -> list[tuple[str, str, list[str]]]:
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), [r.to_text() for r in rrset])
            for rrset in reply.answer]


@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_pod_behind_the_node_local_cache_gets_its_search_path_walked(
        servers: tuple[ServerProcess, ServerProcess], via_tcp: bool) -> None:
    _, node_local = servers
    reply = ask(node_local, FROM_SHOP, SHOP_POD, via_tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert answer_of(reply) == [(FROM_SHOP, "CNAME", [FOUND]), (FOUND, "A", ["10.96.0.10"])]
    assert not [option for option in reply.options if isinstance(option, dns.edns.ECSOption)]


def test_two_pods_of_different_namespaces_each_get_their_own_answer_through_the_cache(
        servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, node_local = servers
    assert answer_of(ask(node_local, FROM_SHOP, SHOP_POD))[0] == (FROM_SHOP, "CNAME", [FOUND])
    assert ask(node_local, FROM_SHOP, DATA_POD).rcode() == dns.rcode.NXDOMAIN  # not the shop pod's reply, cached
    assert answer_of(ask(node_local, FROM_DATA, DATA_POD))[0] == (FROM_DATA, "CNAME", [FOUND])
    assert answer_of(ask(node_local, FROM_SHOP, SHOP_POD))[0] == (FROM_SHOP, "CNAME", [FOUND])  # nor the other way


def test_an_untrusted_sources_client_subnet_is_ignored(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """A client that is not the node-local cache cannot borrow the shop pod's namespace by naming its address."""
    cluster, _ = servers
    reply = ask(cluster, FROM_SHOP, STRANGER, options=[dns.edns.ECSOption(SHOP_POD, 32)])
    assert reply.rcode() == dns.rcode.NXDOMAIN and answer_of(reply) == []
    assert not [option for option in reply.options if isinstance(option, dns.edns.ECSOption)]
    assert answer_of(ask(cluster, FROM_SHOP, SHOP_POD))[0] == (FROM_SHOP, "CNAME", [FOUND])  # the pod itself: walked
