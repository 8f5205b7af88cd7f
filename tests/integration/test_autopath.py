"""autopath in the real server process: the test's own address, 127.0.0.1, is a running pod's in `shop`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.integration.server import ServerProcess

COREFILE = """cluster.local {
    kubernetes cluster.local {
        fixtures cluster
        pods verified
    }
    autopath @kubernetes
}
"""
MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "frontend", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
     "metadata": {"name": "frontend-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "frontend"}},
     "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop",
                                                     "creationTimestamp": "2024-05-01T10:00:00Z"},
     "spec": {"containers": [{"name": "web", "image": "web"}]},
     "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}},
]
SEARCHED = "frontend.shop.svc.shop.svc.cluster.local."
FOUND = "frontend.shop.svc.cluster.local."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("autopath")
    (directory / "cluster").mkdir()
    (directory / "cluster" / "shop.yaml").write_text(yaml.safe_dump_all(MANIFESTS))
    with ServerProcess.from_corefile(directory, COREFILE, ready_name=FOUND, ready_type="A") as running:
        yield running


def ask(server: ServerProcess, name: str, via_tcp: bool) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    exchange = dns.query.tcp if via_tcp else dns.query.udp
    return exchange(query, server.host, port=server.port, timeout=5)


@pytest.mark.parametrize("via_tcp", [False, True])
def test_the_pod_gets_its_namespaces_service_behind_a_cname(server: ServerProcess, via_tcp: bool) -> None:
    reply = ask(server, SEARCHED, via_tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), [r.to_text() for r in rrset])
            for rrset in reply.answer] == [(SEARCHED, "CNAME", [FOUND]), (FOUND, "A", ["10.96.0.10"])]


@pytest.mark.parametrize("via_tcp", [False, True])
def test_names_nowhere_on_the_path_stay_nxdomain_and_direct_hits_have_no_cname(server: ServerProcess,
                                                                              via_tcp: bool) -> None:
    assert ask(server, "nothing.shop.svc.cluster.local.", via_tcp).rcode() == dns.rcode.NXDOMAIN
    reply = ask(server, FOUND, via_tcp)
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.A]
