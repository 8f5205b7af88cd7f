"""autopath in the real server process, over UDP and TCP with dnspython.

From manifests: the test's own address, 127.0.0.1, is a running pod's in `shop`.  From the Kubernetes API
(the stand-in tests/kube_api_standin.py, listed and watched by the official client): pods on loopback
addresses, each asked from as dnspython's source address.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.integration.server import ServerProcess, free_port, wait_for
from tests.kube_api_standin import KubeApiStandIn, namespace, pod, service

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


SHOP_POD, SHOP_POD_2, DATA_POD = "127.0.0.5", "127.0.0.6", "127.0.0.7"
API_COREFILE = """cluster.local {{
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
        pods verified
    }}
    autopath @kubernetes
    prometheus 127.0.0.1:{metrics}
}}
"""
CHANGE_WAIT = 15.0  # a change in the API until DNS serves it: generous, for a loaded machine


def ask_from(server: ServerProcess, source: str, via_tcp: bool, name: str = SEARCHED) -> tuple[str, list[str]]:
    """(rcode, the answer's record types) of `name` asked from `source`."""
    query = dns.message.make_query(name, "A")
    exchange = dns.query.tcp if via_tcp else dns.query.udp
    reply = exchange(query, server.host, port=server.port, timeout=5, source=source)
    return dns.rcode.to_text(reply.rcode()), [dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.answer]


def table_hits(metrics: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("dns_server_answer_cache_hits_total{"))


@pytest.mark.parametrize("via_tcp", [False, True])
def test_pods_of_a_namespace_share_its_kept_answer_and_no_other_namespace_gets_it(tmp_path: Path,
                                                                                  via_tcp: bool) -> None:
    """Two shop pods and a data pod from the API; then the data pod's address passes to a new shop pod."""
    api = KubeApiStandIn(bookmark_interval=3600).start()
    api.load([namespace("shop"), namespace("data"), service("shop", "frontend", "10.96.0.10"),
              pod("shop", "web-0", SHOP_POD), pod("shop", "web-1", SHOP_POD_2), pod("data", "pg-0", DATA_POD)])
    metrics = free_port()
    text = API_COREFILE.format(kubeconfig=api.write_kubeconfig(tmp_path / "kubeconfig"), metrics=metrics)
    walked = ("NOERROR", ["CNAME", "A"])
    try:
        with ServerProcess.from_corefile(tmp_path, text, ready_name=FOUND, ready_type="A") as server:
            assert ask_from(server, SHOP_POD, via_tcp) == walked
            hits = table_hits(metrics)
            assert ask_from(server, SHOP_POD_2, via_tcp) == walked
            assert table_hits(metrics) == hits + 1  # the second shop pod's answer came from the table
            for _ in range(2):  # walked for data (nothing there), then from the table: never shop's answer
                assert ask_from(server, DATA_POD, via_tcp) == ("NXDOMAIN", [])
            assert ask_from(server, "127.0.0.1", via_tcp) == ("NXDOMAIN", [])  # no pod's address
            api.delete("Pod", "data", "pg-0")
            api.apply(pod("shop", "web-2", DATA_POD))
            wait_for(lambda: ask_from(server, DATA_POD, via_tcp) == walked, CHANGE_WAIT,
                     "the address's new pod in shop to get shop's answer")
            assert ask_from(server, SHOP_POD, via_tcp) == walked
    finally:
        api.stop()


NEW_POD = "127.0.0.8"
UNDER_NEW = "frontend.shop.new.svc.cluster.local."  # `frontend.shop` with the first search element of namespace new


@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_name_under_a_namespace_the_cluster_lacks_gets_walked_once_the_namespace_and_its_pod_appear(
        tmp_path: Path, via_tcp: bool) -> None:
    """Until namespace new exists no client can be in it (one answer for all); then its pod's query is walked."""
    api = KubeApiStandIn(bookmark_interval=3600).start()
    api.load([namespace("shop"), service("shop", "frontend", "10.96.0.10"), pod("shop", "web-0", SHOP_POD)])
    text = API_COREFILE.format(kubeconfig=api.write_kubeconfig(tmp_path / "kubeconfig"), metrics=free_port())
    try:
        with ServerProcess.from_corefile(tmp_path, text, ready_name=FOUND, ready_type="A") as server:
            for source in (NEW_POD, SHOP_POD, NEW_POD):  # resolved once, then the same kept answer for each
                assert ask_from(server, source, via_tcp, UNDER_NEW) == ("NXDOMAIN", [])
            api.apply(namespace("new"))
            api.apply(pod("new", "app-0", NEW_POD))
            wait_for(lambda: ask_from(server, NEW_POD, via_tcp, UNDER_NEW) == ("NOERROR", ["CNAME", "A"]),
                     CHANGE_WAIT, "the new namespace's pod to get the walked answer")
            assert ask_from(server, SHOP_POD, via_tcp, UNDER_NEW) == ("NXDOMAIN", [])
    finally:
        api.stop()
