"""clusterset.local in the real server process: ServiceImports from manifests and from the Kubernetes API.

Real parts: the server runs as its own process from a Corefile (`kubernetes cluster.local
clusterset.local { multicluster clusterset.local }`); dnspython asks it over UDP and TCP; /ready is
read over HTTP.  With the API, the server lists and watches through the official `kubernetes`
client; the API server is the stand-in `tests/kube_api_standin.py`, which serves the
Multi-Cluster Services API's ServiceImports at their custom-resource path
(`/apis/multicluster.x-k8s.io/v1alpha1/serviceimports`) with the list/watch protocol of its
other kinds.  Every wait is a poll with a deadline.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.integration.server import ServerProcess, free_port, wait_for
from tests.kube_api_standin import (
    KubeApiStandIn,
    Request,
    endpoint_slice,
    multicluster_slice,
    namespace,
    service,
    service_import,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "multicluster"
CLUSTERSET = "svc.clusterset.local."
CHANGE_WAIT = 15.0  # a change in the API until DNS serves it: generous, for a loaded machine
FIXTURES_COREFILE = """cluster.local clusterset.local {
    kubernetes cluster.local clusterset.local {
        fixtures cluster
        multicluster clusterset.local
    }
}
"""
API_COREFILE = """cluster.local clusterset.local {{
    kubernetes cluster.local clusterset.local {{
        kubeconfig {kubeconfig}
        {multicluster}
    }}
    ready 127.0.0.1:{ready}
}}
"""


def answer(server: ServerProcess, name: str, qtype: str = "A", via_tcp: bool = False) -> tuple[str, set[str]]:
    """(rcode, `name type data` of each answer record) of one question."""
    query = dns.message.make_query(name, qtype)
    reply = server.tcp(query) if via_tcp else server.udp(query)
    return dns.rcode.to_text(reply.rcode()), {
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rr}" for rrset in reply.answer for rr in rrset}


# -- from manifests ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def from_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("multicluster")
    shutil.copytree(DATA, directory / "cluster")
    with ServerProcess.from_corefile(directory, FIXTURES_COREFILE, ready_name="frontend.web." + CLUSTERSET,
                                     ready_type="A") as running:
        yield running


@pytest.mark.parametrize("via_tcp", [False, True])
def test_imports_from_manifests_answer_in_the_clusterset_zone(from_fixtures: ServerProcess, via_tcp: bool) -> None:
    server = from_fixtures
    assert answer(server, "frontend.web." + CLUSTERSET, "A", via_tcp) == (
        "NOERROR", {"frontend.web.svc.clusterset.local. A 245.0.0.20"})
    assert answer(server, "frontend.web." + CLUSTERSET, "AAAA", via_tcp) == ("NOERROR", set())
    assert answer(server, "cassandra.db." + CLUSTERSET, "A", via_tcp) == (
        "NOERROR", {f"cassandra.db.svc.clusterset.local. A {a}" for a in ("10.1.0.1", "10.1.0.2", "10.2.0.1")})
    assert answer(server, "_cql._tcp.cassandra.db." + CLUSTERSET, "SRV", via_tcp) == (
        "NOERROR", {f"_cql._tcp.cassandra.db.svc.clusterset.local. SRV 0 33 9042 {t}.cassandra.db.{CLUSTERSET}"
                    for t in ("cassandra-0.east", "10-1-0-2.east", "cassandra-0.west")})
    assert answer(server, "cassandra-0.west.cassandra.db." + CLUSTERSET, "A", via_tcp) == (
        "NOERROR", {"cassandra-0.west.cassandra.db.svc.clusterset.local. A 10.2.0.1"})


@pytest.mark.parametrize("via_tcp", [False, True])
def test_names_without_an_import_are_nxdomain_there_and_local_names_stay_local(from_fixtures: ServerProcess,
                                                                               via_tcp: bool) -> None:
    server = from_fixtures
    for name in ("local-only.web", "idle.db", "cassandra-0.cassandra.db", "east.cassandra.db"):
        assert answer(server, f"{name}.{CLUSTERSET}", "A", via_tcp) == ("NXDOMAIN", set()), name
    assert answer(server, "local-only.web.svc.cluster.local.", "A", via_tcp) == (
        "NOERROR", {"local-only.web.svc.cluster.local. A 10.96.0.21"})
    assert answer(server, "fe-0.frontend.web.svc.cluster.local.", "A", via_tcp) == ("NXDOMAIN", set())


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_finds_each_cluster_s_endpoints_of_a_headless_import(from_fixtures: ServerProcess, transport: str) -> None:
    """What a user types to see where a cluster-set service runs."""
    server = from_fixtures
    result = subprocess.run(["dig", f"@{server.host}", "-p", str(server.port), "+time=5", "+tries=1", transport,
                             "+short", "SRV", "_cql._tcp.cassandra.db.svc.clusterset.local"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert sorted(result.stdout.splitlines()) == [
        f"0 33 9042 {host}.cassandra.db.svc.clusterset.local." for host in
        ("10-1-0-2.east", "cassandra-0.east", "cassandra-0.west")]


# -- from the API ---------------------------------------------------------------------------------------------------

@pytest.fixture
def api() -> Iterator[KubeApiStandIn]:
    standin = KubeApiStandIn(bookmark_interval=3600).start()
    standin.load([namespace("web"), namespace("db"), service("web", "frontend", "10.96.0.20"),
                  endpoint_slice("web", "frontend", ["10.244.0.5"]),
                  service_import("web", "frontend", ["245.0.0.20"]), service_import("db", "cassandra"),
                  multicluster_slice("db", "cassandra", "east", ["10.1.0.1", "10.1.0.2"], ready=[True, False])])
    yield standin
    standin.stop()


def api_server(api: KubeApiStandIn, directory: Path, multicluster: bool, ready: int) -> ServerProcess:
    kubeconfig = api.write_kubeconfig(directory / "kubeconfig")
    text = API_COREFILE.format(kubeconfig=kubeconfig, ready=ready,
                               multicluster="multicluster clusterset.local" if multicluster else "")
    return ServerProcess.from_corefile(directory, text)


def readiness(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_ready_waits_for_the_service_imports_then_changes_are_served(api: KubeApiStandIn, tmp_path: Path) -> None:
    listed = threading.Event()

    def hold_service_imports(request: Request) -> None:
        if request.kind == "ServiceImport" and not request.watch:
            listed.wait(CHANGE_WAIT)

    api.on_request = hold_service_imports
    ready = free_port()
    with api_server(api, tmp_path, multicluster=True, ready=ready) as server:
        wait_for(lambda: bool(api.lists("ServiceImport")), CHANGE_WAIT, "the ServiceImports to be listed")
        wait_for(lambda: bool(api.watches("EndpointSlice")), CHANGE_WAIT, "the other kinds to be watched")
        assert readiness(ready) == (503, "kubernetes")
        assert answer(server, "frontend.web." + CLUSTERSET)[0] == "SERVFAIL"  # nothing is claimed missing yet
        listed.set()
        wait_for(lambda: readiness(ready)[0] == 200, CHANGE_WAIT, "/ready once the ServiceImports are synced")
        assert answer(server, "frontend.web." + CLUSTERSET) == (
            "NOERROR", {"frontend.web.svc.clusterset.local. A 245.0.0.20"})
        headless = "cassandra.db." + CLUSTERSET
        assert answer(server, headless) == ("NOERROR", {f"cassandra.db.svc.clusterset.local. A 10.1.0.1"})
        for via_tcp in (False, True):
            api.apply(multicluster_slice("db", "cassandra", "west", [f"10.2.0.{1 + via_tcp}"]))
            wait_for(lambda: answer(server, f"10-2-0-{1 + via_tcp}.west.cassandra.db.{CLUSTERSET}", "A", via_tcp)[0]
                     == "NOERROR", CHANGE_WAIT, "a new cluster's slice to be served")
        assert answer(server, headless, "A", True)[1] == {
            f"cassandra.db.svc.clusterset.local. A {a}" for a in ("10.1.0.1", "10.2.0.2")}
        api.apply(service_import("web", "frontend", ["245.0.0.99"]))
        wait_for(lambda: answer(server, "frontend.web." + CLUSTERSET, "A", True) == (
            "NOERROR", {"frontend.web.svc.clusterset.local. A 245.0.0.99"}), CHANGE_WAIT, "the import's new ip")
        api.delete("ServiceImport", "db", "cassandra")
        wait_for(lambda: answer(server, headless)[0] == "NXDOMAIN", CHANGE_WAIT, "the deleted import to go")
    watched = {(r.path, r.params.get("labelSelector")) for r in api.requests if r.watch}
    assert ("/apis/multicluster.x-k8s.io/v1alpha1/serviceimports", None) in watched
    assert ("/apis/discovery.k8s.io/v1/endpointslices", "multicluster.kubernetes.io/service-name") in watched
    assert ("/apis/discovery.k8s.io/v1/endpointslices", "!multicluster.kubernetes.io/service-name") in watched


def test_without_multicluster_no_service_import_is_asked_for(api: KubeApiStandIn, tmp_path: Path) -> None:
    with api_server(api, tmp_path, multicluster=False, ready=free_port()) as server:
        wait_for(lambda: answer(server, "nothing.web.svc.clusterset.local.")[0] == "NXDOMAIN", CHANGE_WAIT,
                 "the sync")
        assert answer(server, "frontend.web.svc.clusterset.local.") == (  # an ordinary cluster zone
            "NOERROR", {"frontend.web.svc.clusterset.local. A 10.96.0.20"})
    assert not [r for r in api.requests if r.kind == "ServiceImport"]
    assert {r.params.get("labelSelector") for r in api.requests if r.kind == "EndpointSlice"} == {None}


def test_the_stand_in_lists_service_imports_of_one_namespace(api: KubeApiStandIn) -> None:
    """The namespaced collection path, as `kubectl get serviceimports -n db` asks for it."""
    request = urllib.request.Request(f"{api.url}/apis/multicluster.x-k8s.io/v1alpha1/namespaces/db/serviceimports",
                                     headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        listed = yaml.safe_load(response.read())
    assert listed["kind"] == "ServiceImportList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["cassandra"]
