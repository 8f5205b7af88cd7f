"""The real server process kept in sync with a cluster through the Kubernetes API.

Real parts: the server runs as its own process (`python -m dns_server --kubeconfig FILE`) and
talks to the API with the official `kubernetes` Python client, configured from a generated
kubeconfig (bearer token, plain HTTP); dnspython asks it over UDP and TCP; where names outside
the cluster matter, the upstream is the real unbound daemon.  Stand-in: the API server itself,
`tests/kube_api_standin.py`, which speaks kube-apiserver's list/watch protocol (paged lists,
chunked watch streams, bookmarks, 410 Gone, selectors) and whose docstring says where each
behaviour is specified.  Every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
import yaml

from dns_server.cluster.records import Service
from tests.cluster_data import ZONES, example_records
from tests.integration.server import ServerProcess, wait_for
from tests.integration.upstream import Unbound
from tests.kube_api_standin import (
    KubeApiStandIn,
    endpoint_slice,
    namespace,
    objects_of,
    pod,
    service,
)

Z = "cluster.local"
SYNC_DEADLINE = 30.0  # generous: the stand-in answers in milliseconds, but the machine may be loaded
RECOVERY_DEADLINE = 30.0  # API back after an outage: the client's backoff (0.8 s doubling) must elapse first
CHANGE_WAIT = 15.0  # a change in the API until DNS serves it: generous, for a loaded machine
SHUTDOWN_WAIT = 60.0  # far less than a watch's 5 minutes, far more than a loaded machine needs


def zone_objects() -> list[dict]:
    return objects_of(d for f in sorted(ZONES.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()))


@pytest.fixture
def api() -> Iterator[KubeApiStandIn]:
    standin = KubeApiStandIn(bookmark_interval=3600).start()  # bookmarks only where a test asks for them
    standin.load(zone_objects())
    yield standin
    standin.stop()


@pytest.fixture
def kubeconfig(api: KubeApiStandIn, tmp_path: Path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


def start(kubeconfig: Path, *args: str) -> ServerProcess:
    """The server on the API source; `with` starts it and stops it."""
    return ServerProcess("--kubeconfig", str(kubeconfig), *args)


def answer(server: ServerProcess, name: str, qtype: str = "A", tcp: bool = False) -> tuple[str, set[str]]:
    """(rcode, the answer section as text) of one question."""
    message = dns.message.make_query(name, qtype)
    reply = server.tcp(message) if tcp else server.udp(message)
    return dns.rcode.to_text(reply.rcode()), {
        f"{rrset.name.to_text().lower()} {dns.rdatatype.to_text(rrset.rdtype)} {rr.to_text()}"
        for rrset in reply.answer for rr in rrset}


def addresses(server: ServerProcess, name: str, qtype: str = "A") -> tuple[str, set[str]]:
    rcode, records = answer(server, name, qtype)
    return rcode, {text.split()[-1] for text in records}


def synced(server: ServerProcess) -> bool:
    """Synced: a name that does not exist is NXDOMAIN, no longer SERVFAIL."""
    return answer(server, f"no-such-service.default.svc.{Z}")[0] == "NXDOMAIN"


def wait_synced(server: ServerProcess) -> None:
    wait_for(lambda: synced(server), SYNC_DEADLINE, "the first sync")


def questions() -> list[tuple[str, str]]:
    """Every name of the example cluster, asked for every type it could have, and some misses."""
    asked: list[tuple[str, str]] = []
    for record in example_records():
        if isinstance(record, Service):
            name = f"{record.name}.{record.namespace}.svc.{Z}"
            asked += [(name, "A"), (name, "AAAA"), (name, "SRV"), (name, "CNAME"), (name, "TXT")]
            asked += [(f"_{p.name}._{p.protocol.lower()}.{name}", "SRV") for p in record.ports if p.name]
            asked += [(dns.reversename.from_address(ip).to_text(), "PTR") for ip in record.cluster_ips]
    asked += [(f"postgres-{i}.postgres.data.svc.{Z}", "A") for i in range(3)]
    asked += [(f"10-244-1-5.shop.pod.{Z}", "A"), (f"10-244-1-99.shop.pod.{Z}", "A"), (f"shop.svc.{Z}", "A"),
              (f"nope.svc.{Z}", "A"), (f"nope.shop.svc.{Z}", "A"), (Z, "SOA"), (Z, "NS"),
              (f"dns-version.{Z}", "TXT")]
    asked += [(dns.reversename.from_address(ip).to_text(), "PTR") for ip in ("10.244.1.10", "10.244.3.12")]
    return asked


def without_serial(result: tuple[str, set[str]]) -> tuple[str, set[str]]:
    """The SOA serial is the time of the last change, which differs between two servers."""
    rcode, records = result
    return rcode, {re.sub(r" SOA (\S+ \S+) \d+ ", r" SOA \1 SERIAL ", text) for text in records}


@pytest.mark.parametrize("pods", ["insecure", "verified"])
def test_every_answer_equals_the_fixture_modes(api: KubeApiStandIn, kubeconfig: Path, zones_copy: Path,
                                               pods: str) -> None:
    """The API source feeds the same registry as the fixture files: every answer is the same."""
    with ServerProcess("--fixtures", str(zones_copy), "--pods", pods) as from_files, \
            start(kubeconfig, "--pods", pods) as from_api:
        wait_synced(from_api)
        for name, qtype in questions():
            for tcp in (False, True):
                expected = without_serial(answer(from_files, name, qtype, tcp))
                assert without_serial(answer(from_api, name, qtype, tcp)) == expected, (name, qtype, tcp)
    if pods == "verified":
        pod_lists = api.lists("Pod")
        assert pod_lists and all(r.params["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed,"
                                 "status.phase!=Unknown" for r in pod_lists + api.watches("Pod"))
    else:
        assert not api.lists("Pod") and not api.watches("Pod")


def test_the_initial_sync_lists_in_pages_then_watches_from_the_lists_version(api: KubeApiStandIn,
                                                                              kubeconfig: Path) -> None:
    api.load([service("bulk", f"svc-{i}", f"10.97.{i // 250}.{i % 250 + 1}") for i in range(1200)]
             + [namespace("bulk")])
    version = str(api.resource_version)
    with start(kubeconfig) as server:
        wait_synced(server)
        assert addresses(server, f"svc-1199.bulk.svc.{Z}") == ("NOERROR", {"10.97.4.200"})
        lists = api.lists("Service")
        assert [r.params.get("limit") for r in lists] == ["500", "500", "500"]
        assert "continue" not in lists[0].params and all(r.params["continue"] for r in lists[1:])
        watch = api.watches("Service")[0]
        assert watch.params["resourceVersion"] == version
        assert watch.params["allowWatchBookmarks"] == "true"
        assert 300 <= int(watch.params["timeoutSeconds"]) < 600  # client-go's 5 min, times 1 to 2


def test_service_added_changed_and_deleted(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig) as server:
        wait_synced(server)
        name = f"reports.shop.svc.{Z}"
        assert addresses(server, name)[0] == "NXDOMAIN"
        api.apply(service("shop", "reports", "10.96.20.1"))
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.96.20.1"}), CHANGE_WAIT, "the new service")
        changed = api.get("Service", "shop", "reports")
        changed["spec"]["clusterIP"] = "10.96.20.2"
        changed["spec"]["clusterIPs"] = ["10.96.20.2"]
        api.apply(changed)
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.96.20.2"}), CHANGE_WAIT, "the changed address")
        assert answer(server, "2.20.96.10.in-addr.arpa", "PTR")[1] == {f"2.20.96.10.in-addr.arpa. PTR {name}."}
        api.delete("Service", "shop", "reports")
        wait_for(lambda: addresses(server, name)[0] == "NXDOMAIN", CHANGE_WAIT, "the deleted service to be gone")
        assert answer(server, "2.20.96.10.in-addr.arpa", "PTR", tcp=True)[1] == set()


def test_endpoint_becoming_not_ready_and_slices_coming_and_going(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig) as server:
        wait_synced(server)
        api.apply(service("data", "queue", None),
                  endpoint_slice("data", "queue", ["10.244.5.1", "10.244.5.2"], suffix="aaaaa"))
        name = f"queue.data.svc.{Z}"
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.244.5.1", "10.244.5.2"}), CHANGE_WAIT,
                 "both endpoints")
        api.apply(endpoint_slice("data", "queue", ["10.244.5.1", "10.244.5.2"], suffix="aaaaa",
                                 ready=[True, False]))
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.244.5.1"}), CHANGE_WAIT, "the not-ready one to go")
        assert addresses(server, f"10-244-5-2.queue.data.svc.{Z}")[0] == "NXDOMAIN"
        api.apply(endpoint_slice("data", "queue", ["10.244.6.1"], suffix="bbbbb"))
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.244.5.1", "10.244.6.1"}), CHANGE_WAIT,
                 "a second slice merged in")
        api.delete("EndpointSlice", "data", "queue-aaaaa")
        wait_for(lambda: addresses(server, name) == ("NOERROR", {"10.244.6.1"}), CHANGE_WAIT, "the first slice gone")
        api.delete("EndpointSlice", "data", "queue-bbbbb")
        wait_for(lambda: addresses(server, name)[0] == "NXDOMAIN", CHANGE_WAIT, "no ready endpoint left: NXDOMAIN")


def test_namespace_added_and_deleted(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig) as server:
        wait_synced(server)
        assert answer(server, f"billing.svc.{Z}")[0] == "NXDOMAIN"
        api.apply(namespace("billing"))
        wait_for(lambda: answer(server, f"billing.svc.{Z}") == ("NOERROR", set()), CHANGE_WAIT,
                 "the namespace (NODATA)")
        assert answer(server, f"10-244-9-9.billing.pod.{Z}") == (
            "NOERROR", {f"10-244-9-9.billing.pod.{Z}. A 10.244.9.9"})
        api.delete("Namespace", "", "billing")
        wait_for(lambda: answer(server, f"billing.svc.{Z}")[0] == "NXDOMAIN", CHANGE_WAIT, "the namespace to be gone")


def test_a_dropped_connection_resumes_from_the_last_version_without_a_relist(api: KubeApiStandIn,
                                                                             kubeconfig: Path) -> None:
    with start(kubeconfig) as server:
        wait_synced(server)
        last = api.apply(service("shop", "before-drop", "10.96.30.1"))
        wait_for(lambda: addresses(server, f"before-drop.shop.svc.{Z}")[0] == "NOERROR", CHANGE_WAIT,
                 "the first change")
        lists = {kind: len(api.lists(kind)) for kind in ("Namespace", "Service", "EndpointSlice")}
        watches = len(api.watches("Service"))
        api.drop_connections()
        api.apply(service("shop", "after-drop", "10.96.30.2"))
        wait_for(lambda: addresses(server, f"after-drop.shop.svc.{Z}") == ("NOERROR", {"10.96.30.2"}), CHANGE_WAIT,
                 "the change made while the connection was down")
        resumed = api.watches("Service")[watches]
        assert resumed.params["resourceVersion"] == str(last)  # the last event seen before the drop
        assert {kind: len(api.lists(kind)) for kind in lists} == lists  # no relist of anything


@pytest.mark.parametrize("gone_as_event", [False, True], ids=["http-410", "error-event-410"])
def test_gone_relists_and_drops_what_was_deleted_meanwhile(kubeconfig: Path, api: KubeApiStandIn,
                                                           gone_as_event: bool) -> None:
    api.gone_as_event = gone_as_event
    with start(kubeconfig) as server:
        wait_synced(server)
        wait_for(lambda: api.watches("Service"), CHANGE_WAIT, "the first watch of services")
        seen = api.resource_version  # what the client has seen: nothing changed since its listing
        watched = len(api.watches("Service"))
        api.down()
        api.delete("Service", "shop", "cart")  # deleted while we were away ...
        api.apply(service("shop", "returns", "10.96.40.1"))  # ... and one created
        api.compact()  # the history the client would resume from is gone
        api.up()
        wait_for(lambda: addresses(server, f"cart.shop.svc.{Z}")[0] == "NXDOMAIN", RECOVERY_DEADLINE,
                 "the service deleted during the outage to disappear")
        assert addresses(server, f"returns.shop.svc.{Z}") == ("NOERROR", {"10.96.40.1"})
        assert addresses(server, f"frontend.shop.svc.{Z}") == ("NOERROR", {"10.96.10.20"})
        relisted = str(api.resource_version)  # nothing changed since the outage
        wait_for(lambda: [w for w in api.watches("Service") if w.params["resourceVersion"] == relisted],
                 CHANGE_WAIT, "a watch from the relist's resourceVersion")
        # before that, it tried to resume from where it was: 410, that history is gone
        assert api.watches("Service")[watched].params["resourceVersion"] == str(seen)
        assert len(api.lists("Service")) >= 2  # the relist
        assert "relisted services" in server.log()


def test_api_down_at_start_then_up(api: KubeApiStandIn, kubeconfig: Path, unbound: Unbound) -> None:
    """Cluster names are SERVFAIL, never NXDOMAIN, until the first sync; then they are right.

    Names outside the cluster are forwarded meanwhile, to a real unbound (tests/integration/upstream.py).
    """
    api.down()
    with start(kubeconfig, "--upstream", unbound.address) as server:  # listening, the API unreachable
        for name in (f"frontend.shop.svc.{Z}", f"nope.shop.svc.{Z}", f"shop.svc.{Z}", f"10-1-2-3.shop.pod.{Z}"):
            assert answer(server, name)[0] == "SERVFAIL", name
        assert answer(server, f"dns-version.{Z}", "TXT")[0] == "NOERROR"
        assert answer(server, "www.example.com") == ("NOERROR", {"www.example.com. A 192.0.2.10"})
        assert answer(server, "www.example.com", "AAAA", tcp=True) == (
            "NOERROR", {"www.example.com. AAAA 2001:db8::10"})
        wait_for(lambda: "retrying in" in server.log(), CHANGE_WAIT, "a failed attempt to be logged")
        assert answer(server, f"nope.shop.svc.{Z}", tcp=True)[0] == "SERVFAIL"
        api.up()
        wait_for(lambda: synced(server), RECOVERY_DEADLINE, "the sync once the API is up")
        assert addresses(server, f"frontend.shop.svc.{Z}") == ("NOERROR", {"10.96.10.20"})
        assert answer(server, f"nope.shop.svc.{Z}")[0] == "NXDOMAIN"


def test_api_down_later_keeps_serving_the_last_data(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig) as server:
        wait_synced(server)
        api.down()
        wait_for(lambda: server.log().count("retrying in") >= 6, RECOVERY_DEADLINE, "two rounds of failed attempts")
        assert addresses(server, f"frontend.shop.svc.{Z}") == ("NOERROR", {"10.96.10.20"})
        assert addresses(server, f"postgres.data.svc.{Z}") == ("NOERROR", {"10.244.1.10", "10.244.2.11"})
        assert answer(server, f"nope.shop.svc.{Z}", tcp=True)[0] == "NXDOMAIN"  # still synced
        api.up()
        api.apply(service("shop", "after-outage", "10.96.50.1"))
        wait_for(lambda: addresses(server, f"after-outage.shop.svc.{Z}")[0] == "NOERROR", RECOVERY_DEADLINE,
                 "changes to flow again")


def test_namespaces_flag_serves_only_those(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig, "--namespaces", "shop,default") as server:
        wait_synced(server)
        assert addresses(server, f"frontend.shop.svc.{Z}") == ("NOERROR", {"10.96.10.20"})
        assert addresses(server, f"postgres.data.svc.{Z}")[0] == "NXDOMAIN"
        assert answer(server, f"data.svc.{Z}")[0] == "NXDOMAIN"
        assert answer(server, f"kube-system.svc.{Z}")[0] == "NXDOMAIN"
        api.apply(service("data", "late", "10.96.60.1"), service("shop", "late", "10.96.60.2"))
        wait_for(lambda: addresses(server, f"late.shop.svc.{Z}")[0] == "NOERROR", CHANGE_WAIT, "the change in shop")
        assert addresses(server, f"late.data.svc.{Z}")[0] == "NXDOMAIN"
        assert answer(server, "1.60.96.10.in-addr.arpa", "PTR")[1] == set()


def test_namespaces_flag_applies_to_fixtures_too(zones_copy: Path) -> None:
    """The filter sits in the registry, so the fixture source honours it as the API source does."""
    with ServerProcess("--fixtures", str(zones_copy), "--namespaces", "data") as server:
        assert addresses(server, f"postgres.data.svc.{Z}") == ("NOERROR", {"10.244.1.10", "10.244.2.11"})
        assert addresses(server, f"frontend.shop.svc.{Z}")[0] == "NXDOMAIN"
        assert answer(server, f"shop.svc.{Z}")[0] == "NXDOMAIN"
        assert answer(server, "20.10.96.10.in-addr.arpa", "PTR")[1] == set()


def test_label_selectors_go_to_the_api(api: KubeApiStandIn, kubeconfig: Path) -> None:
    api.apply(service("shop", "public", "10.96.70.1", labels={"expose": "dns"}),
              namespace("team-a", {"dns": "on"}), service("team-a", "web", "10.96.70.2", labels={"expose": "dns"}))
    with start(kubeconfig, "--labels", "expose=dns", "--namespace-labels", "dns in (on)") as server:
        wait_synced(server)
        assert addresses(server, f"web.team-a.svc.{Z}") == ("NOERROR", {"10.96.70.2"})
        assert addresses(server, f"frontend.shop.svc.{Z}")[0] == "NXDOMAIN"  # no label
        assert addresses(server, f"public.shop.svc.{Z}")[0] == "NXDOMAIN"  # namespace not selected
        for kind, selector in (("Service", "expose=dns"), ("EndpointSlice", "expose=dns"),
                               ("Namespace", "dns in (on)")):
            requests = api.lists(kind) + api.watches(kind)
            assert requests and all(r.params["labelSelector"] == selector for r in requests), kind
        shop = api.get("Namespace", "", "shop")
        shop["metadata"]["labels"]["dns"] = "on"
        api.apply(shop)  # the namespace starts matching: its labelled services appear
        wait_for(lambda: addresses(server, f"public.shop.svc.{Z}") == ("NOERROR", {"10.96.70.1"}), CHANGE_WAIT,
                 "the newly selected namespace's service")
        shop["metadata"]["labels"]["dns"] = "off"
        api.apply(shop)  # and stops matching: the API sends DELETED, its services go
        wait_for(lambda: addresses(server, f"public.shop.svc.{Z}")[0] == "NXDOMAIN", CHANGE_WAIT,
                 "the deselected namespace")
        assert addresses(server, f"web.team-a.svc.{Z}") == ("NOERROR", {"10.96.70.2"})


def test_pods_verified_follows_pod_phases(api: KubeApiStandIn, kubeconfig: Path) -> None:
    with start(kubeconfig, "--pods", "verified") as server:
        wait_synced(server)
        name = f"10-244-1-5.shop.pod.{Z}"
        assert addresses(server, name) == ("NOERROR", {"10.244.1.5"})
        assert addresses(server, f"10-244-1-99.shop.pod.{Z}")[0] == "NXDOMAIN"  # Succeeded: filtered by the API
        api.apply(pod("shop", "batch-1", "10.244.1.77"))
        wait_for(lambda: addresses(server, f"10-244-1-77.shop.pod.{Z}")[0] == "NOERROR", CHANGE_WAIT, "the new pod")
        api.apply(pod("shop", "batch-1", "10.244.1.77", phase="Succeeded"))
        wait_for(lambda: addresses(server, f"10-244-1-77.shop.pod.{Z}")[0] == "NXDOMAIN", CHANGE_WAIT,
                 "the finished pod to go (the field selector turns it into DELETED)")


def test_watch_file_replays_on_top_of_fixtures(zones_copy: Path, tmp_path: Path) -> None:
    added = service("shop", "replayed", "10.96.80.1")
    cart = {**service("shop", "cart", "10.96.80.2"), "apiVersion": "v1"}
    lines = [
        json.dumps({"type": "ADDED", "object": {**added, "apiVersion": "v1"}}),
        json.dumps({"type": "MODIFIED", "object": cart}),
        "{this is not json",
        json.dumps({"type": "DELETED", "object": {"kind": "Service", "apiVersion": "v1",
                                                   "metadata": {"name": "checkout", "namespace": "shop"}}}),
        json.dumps({"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "9"}}}),
        json.dumps({"type": "ADDED", "object": {"kind": "Service", "metadata": {"name": "broken", "namespace": "shop"},
                                                "spec": {"clusterIP": "not-an-ip"}}}),
    ]
    stream = tmp_path / "incident.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    with ServerProcess("--fixtures", str(zones_copy), "--watch-file", str(stream)) as server:
        assert addresses(server, f"replayed.shop.svc.{Z}") == ("NOERROR", {"10.96.80.1"})
        assert addresses(server, f"cart.shop.svc.{Z}") == ("NOERROR", {"10.96.80.2"})
        assert addresses(server, f"checkout.shop.svc.{Z}")[0] == "NXDOMAIN"
        assert addresses(server, f"frontend.shop.svc.{Z}") == ("NOERROR", {"10.96.10.20"})  # fixtures underneath
        log = server.log()
        assert f"{stream}:3: not JSON" in log and f"{stream}:6: spec.clusterIPs[0] 'not-an-ip'" in log
        # a reload of the fixture files keeps the replayed changes on top
        (zones_copy / "extra.yaml").write_text(yaml.safe_dump(service("shop", "extra", "10.96.80.3")))
        wait_for(lambda: addresses(server, f"extra.shop.svc.{Z}")[0] == "NOERROR", CHANGE_WAIT, "the fixture reload")
        assert addresses(server, f"replayed.shop.svc.{Z}") == ("NOERROR", {"10.96.80.1"})
        assert addresses(server, f"checkout.shop.svc.{Z}")[0] == "NXDOMAIN"


def test_shutdown_stops_the_open_watches(api: KubeApiStandIn, kubeconfig: Path) -> None:
    """SIGTERM with watches open (each would run for 5 to 10 minutes): the process exits, cleanly."""
    server = start(kubeconfig).start()
    try:
        wait_synced(server)
        wait_for(lambda: all(api.watches(kind) for kind in ("Namespace", "Service", "EndpointSlice")),
                 CHANGE_WAIT, "every watch to be open")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=SHUTDOWN_WAIT) == 0
    finally:
        server.stop()


@pytest.mark.parametrize("args, message", [
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig: no such file"),
    (["--kubeconfig", "{kubeconfig}", "--context", "nope"], "nope"),
    (["--kubeconfig", "{garbage}"], "kubeconfig {garbage}"),
])
def test_a_bad_kubeconfig_is_a_one_line_error(tmp_path: Path, kubeconfig: Path, args: list[str],
                                              message: str) -> None:
    import subprocess
    import sys

    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [\n")
    argv = [a.format(kubeconfig=kubeconfig, garbage=garbage) for a in args]
    result = subprocess.run([sys.executable, "-m", "dns_server", *argv, "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "dns-server: error:" in result.stderr and message.format(garbage=garbage) in result.stderr
    assert "Traceback" not in result.stderr
