"""autopath: its directive, and the search path it walks for pods, through the real router."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from dns_server.cluster.records import Record, convert
from dns_server.cluster.registry import Registry
from dns_server.cluster.updates import Put, Remove
from dns_server.config.corefile import parse_text
from dns_server.config.model import ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.observability.metrics import Metrics
from dns_server.plugins import build_config
from dns_server.plugins.autopath import AutopathSettings, resolv_conf_search
from dns_server.plugins.hosts import HostsEntry, HostsTable
from dns_server.serving.router import Forward, Pipeline
from tests.cluster_data import registry_with
from tests.doubles import fakes, pipeline_for

COREFILE = """cluster.local {
    kubernetes cluster.local {
        pods verified
    }
    autopath @kubernetes
}
"""
SHOP_POD = "10.244.1.5"
ZONE = "cluster.local"


def reader(files: dict[str, str]) -> Any:
    def read(path: Path) -> str:
        if str(path) not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[str(path)]
    return read


def block_of(text: str, files: dict[str, str] | None = None) -> ServerBlock:
    return build_config(parse_text(text), resolv_conf=reader(files or {})).blocks[0]


def pod(namespace: str, name: str, ip: str, *, created: str = "2024-05-01T10:00:00Z", host_network: bool = False,
        deleting: bool = False, phase: str = "Running") -> Record:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-02T10:00:00Z"
    record = convert({"kind": "Pod", "metadata": meta, "spec": {"hostNetwork": host_network},
                      "status": {"phase": phase, "podIP": ip}})
    assert record is not None
    return record


def cluster(*pods: Record) -> list[Record]:
    objects: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": ns}} for ns in ("shop", "data")]
    objects += [{"kind": "Service", "metadata": {"name": "frontend", "namespace": "shop"},
                 "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}},
                {"kind": "Service", "metadata": {"name": "pg", "namespace": "data"},
                 "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 5432, "protocol": "TCP"}]}}]
    records = [r for r in (convert(o) for o in objects) if r is not None]
    return records + list(pods)


def pipeline_of(*pods: Record, corefile: str = COREFILE, files: dict[str, str] | None = None,
                registry: Registry | None = None) -> Pipeline:
    return pipeline_for(settings=block_of(corefile, files),
                        registry=registry or registry_with(cluster(*pods)))


def ask(pipeline: Pipeline, name: str, qtype: str = "A", peer: str = SHOP_POD,
        via_tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=0)
    reply = pipeline.handle(query.to_wire(), via_tcp, (peer, 40000))
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def records(reply: dns.message.Message) -> list[tuple[str, str, str]]:
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), r.to_text())
            for rrset in reply.answer for r in rrset]


SEARCHED = "frontend.shop.svc.shop.svc.cluster.local."  # `frontend.shop` with the pod's first search element
FOUND = "frontend.shop.svc.cluster.local."


# -- the directive ----------------------------------------------------------------------------------------

def test_kubernetes_form_reads_zones_and_the_servers_own_search_domains() -> None:
    text = COREFILE.replace("autopath @kubernetes", "autopath cluster.local @kubernetes")
    settings = block_of(text, {"/etc/resolv.conf": "nameserver 10.0.0.2\nsearch Corp.Example. lab\n"}).setting(
        "autopath")
    assert settings == AutopathSettings(("cluster.local",), ("corp.example", "lab"), True)


def test_a_missing_resolv_conf_adds_no_search_domains() -> None:
    assert block_of(COREFILE).setting("autopath") == AutopathSettings(("cluster.local",), (), True)


def test_a_resolv_conf_file_gives_the_search_path() -> None:
    text = ". {\n    autopath /etc/my.conf\n}\n"
    settings = block_of(text, {"/etc/my.conf": "domain a.example\nsearch b.example c.example # x\n"}).setting(
        "autopath")
    assert settings == AutopathSettings(("",), ("b.example", "c.example"), False)


def test_resolv_conf_search_takes_the_last_line() -> None:
    assert resolv_conf_search("search a b\ndomain c\n") == ("c",)
    assert resolv_conf_search("; comment\nnameserver 1.1.1.1\n") == ()


@pytest.mark.parametrize("text, message", [
    (". {\n    autopath\n}\n", "Corefile:2 - Error during parsing: no resolv-conf specified"),
    (". {\n    autopath @kubernetes\n}\n", "Corefile:2 - Error during parsing: @kubernetes needs the kubernetes "
                                          "plugin with 'pods verified'"),
    (COREFILE.replace("pods verified", "pods insecure"), "Corefile:5 - Error during parsing: @kubernetes needs"),
    (COREFILE.replace("@kubernetes", "@etcd"), "Corefile:5 - Error during parsing: etcd does not implement the "
                                               "AutoPather interface"),
    (". {\n    autopath /nonexistent\n}\n", 'Corefile:2 - Error during parsing: failed to parse "/nonexistent"'),
    (COREFILE.replace("@kubernetes", "@kubernetes {\n x\n }"), "Corefile:6 - Error during parsing: unknown "
                                                                "property 'x'"),
    (COREFILE + "", None),
])
def test_a_bad_autopath_directive_is_refused_at_start_naming_the_line(text: str, message: str | None) -> None:
    if message is None:
        block_of(text)
        return
    with pytest.raises(CorefileError, match="plugin/autopath: " + message):
        block_of(text)


# -- the walk -------------------------------------------------------------------------------------------

def test_a_pod_gets_the_service_in_its_namespace_behind_a_cname() -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD))
    for via_tcp in (False, True):
        reply = ask(pipeline, SEARCHED, via_tcp=via_tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert records(reply) == [(SEARCHED, "CNAME", FOUND), (FOUND, "A", "10.96.0.10")]
        assert reply.answer[0].ttl == reply.answer[1].ttl == 5  # the found record's TTL
        assert reply.question[0].name.to_text() == SEARCHED


def test_a_service_of_another_namespace_is_found_under_svc() -> None:
    """`pg.data` from a shop pod: pg.data.shop.svc.Z is NXDOMAIN, pg.data.svc.Z is the answer."""
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD))
    reply = ask(pipeline, "pg.data.shop.svc.cluster.local.")
    assert records(reply) == [("pg.data.shop.svc.cluster.local.", "CNAME", "pg.data.svc.cluster.local."),
                              ("pg.data.svc.cluster.local.", "A", "10.96.0.20")]


def test_a_first_try_hit_has_no_cname() -> None:
    reply = ask(pipeline_of(pod("shop", "web-0", SHOP_POD)), FOUND)
    assert records(reply) == [(FOUND, "A", "10.96.0.10")]


def test_nodata_wins_without_records() -> None:
    reply = ask(pipeline_of(pod("shop", "web-0", SHOP_POD)), SEARCHED, "TXT")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == [] and reply.authority


def test_when_every_try_is_nxdomain_the_first_reply_is_returned() -> None:
    reply = ask(pipeline_of(pod("shop", "web-0", SHOP_POD)), "nothing.shop.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []
    assert reply.authority[0].name.to_text() == "cluster.local."
    assert reply.flags & dns.flags.AA


def test_a_client_that_is_no_pod_gets_the_ordinary_answer() -> None:
    reply = ask(pipeline_of(pod("shop", "web-0", SHOP_POD)), SEARCHED, peer="192.0.2.9")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []


def test_a_pod_of_another_namespace_gets_the_ordinary_answer() -> None:
    reply = ask(pipeline_of(pod("data", "pg-0", SHOP_POD)), SEARCHED)
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_a_host_network_pods_address_gets_no_autopath() -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD, host_network=True))
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN


def test_a_finished_pod_gets_no_autopath() -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD, phase="Succeeded"))
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN


def test_a_terminating_pod_yields_the_address_to_a_live_one() -> None:
    """The terminating shop pod is newer, yet the live data pod holds the address."""
    pipeline = pipeline_of(pod("shop", "old", SHOP_POD, deleting=True, created="2024-06-01T00:00:00Z"),
                           pod("data", "new", SHOP_POD))
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN
    assert records(ask(pipeline, "pg.data.data.svc.cluster.local."))[0][1] == "CNAME"


@pytest.mark.parametrize("order", [0, 1])
def test_between_live_pods_the_newest_claim_wins_whatever_the_order(order: int) -> None:
    """The older shop pod's deletion has not arrived: the address is the newer data pod's."""
    claims = [pod("shop", "old", SHOP_POD, created="2024-01-01T00:00:00Z"),
              pod("data", "new", SHOP_POD, created="2024-06-01T00:00:00Z")]
    pipeline = pipeline_of(*(claims if order == 0 else claims[::-1]))
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN
    assert records(ask(pipeline, "pg.data.data.svc.cluster.local."))[0][1] == "CNAME"


def test_a_reused_address_maps_to_the_new_pods_namespace_at_once() -> None:
    registry = registry_with(cluster(pod("data", "pg-0", SHOP_POD)))
    pipeline = pipeline_of(registry=registry)
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN
    registry.apply([Remove(("Pod", "data", "pg-0")), Put(pod("shop", "web-0", SHOP_POD))], now=1_700_000_100)
    assert records(ask(pipeline, SEARCHED))[0] == (SEARCHED, "CNAME", FOUND)
    registry.apply([Remove(("Pod", "shop", "web-0"))], now=1_700_000_200)
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN


def test_the_first_search_element_itself_is_answered_ordinarily() -> None:
    reply = ask(pipeline_of(pod("shop", "web-0", SHOP_POD)), "shop.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []  # the namespace exists: NODATA


def test_the_answer_is_never_served_to_another_client() -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD))
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"
    assert ask(pipeline, SEARCHED, peer="192.0.2.9").rcode() == dns.rcode.NXDOMAIN
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"  # nor the other client's answer to this one


# -- kept per namespace ----------------------------------------------------------------------------------

SHOP_POD_2 = "10.244.1.6"
DATA_POD = "10.244.2.7"


def hits(pipeline: Pipeline) -> int:
    return pipeline.table.counters.hits


def test_a_second_pod_of_the_namespace_gets_the_walked_answer_from_the_table() -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD), pod("shop", "web-1", SHOP_POD_2))
    assert records(ask(pipeline, SEARCHED)) == [(SEARCHED, "CNAME", FOUND), (FOUND, "A", "10.96.0.10")]
    before = hits(pipeline)
    for via_tcp in (False, True):
        assert records(ask(pipeline, SEARCHED, peer=SHOP_POD_2, via_tcp=via_tcp)) == [
            (SEARCHED, "CNAME", FOUND), (FOUND, "A", "10.96.0.10")]
    assert hits(pipeline) == before + 2  # neither was walked again


def test_a_pod_of_another_namespace_never_gets_the_kept_answer() -> None:
    """The same query bytes from a data pod after a shop pod's: not the exact-bytes reply, not the shop entry."""
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD), pod("data", "pg-0", DATA_POD))
    query = dns.message.make_query(SEARCHED, "A", use_edns=0).to_wire()
    *shop, data = (dns.message.from_wire(pipeline.handle(query, False, (peer, 40000)))  # type: ignore[arg-type]
                   for peer in (SHOP_POD, SHOP_POD, SHOP_POD, DATA_POD))  # resolved, from the table, by its bytes
    assert all(records(reply)[0] == (SEARCHED, "CNAME", FOUND) for reply in shop)
    assert pipeline.table.namespaced_udp
    assert data.rcode() == dns.rcode.NXDOMAIN and data.answer == []
    before = hits(pipeline)
    assert ask(pipeline, SEARCHED, peer=DATA_POD).rcode() == dns.rcode.NXDOMAIN  # its own namespace's, kept too
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"
    assert hits(pipeline) == before + 2


def test_a_pod_moved_to_another_namespace_gets_its_new_namespaces_answer_at_once() -> None:
    registry = registry_with(cluster(pod("shop", "web-0", SHOP_POD), pod("shop", "web-1", SHOP_POD_2)))
    pipeline = pipeline_of(registry=registry)
    assert records(ask(pipeline, SEARCHED, peer=SHOP_POD_2))[0][1] == "CNAME"
    registry.apply([Remove(("Pod", "shop", "web-0")), Put(pod("data", "pg-0", SHOP_POD))], now=1_700_000_100)
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN
    assert records(ask(pipeline, SEARCHED, peer=SHOP_POD_2))[0][1] == "CNAME"  # the shop entry stays for shop
    registry.apply([Remove(("Pod", "data", "pg-0")), Put(pod("shop", "web-2", SHOP_POD))], now=1_700_000_200)
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"


@pytest.mark.parametrize("peer, pods", [
    ("192.0.2.9", ()),  # no pod's address
    (SHOP_POD_2, (pod("shop", "node-agent", SHOP_POD_2, host_network=True),)),
])
def test_a_client_that_is_no_pod_gets_the_first_try_whatever_was_kept(peer: str, pods: tuple[Record, ...]) -> None:
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD), *pods)
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"
    for _ in range(2):  # resolved, then from the table
        reply = ask(pipeline, SEARCHED, peer=peer)
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []
    assert set(pipeline.table.namespaced[next(iter(pipeline.table.namespaced))].by_namespace) == {"shop", None}


NEW_POD = "10.244.3.8"
UNDER_NEW = "frontend.shop.new.svc.cluster.local."  # `frontend.shop` with the first search element of namespace new


def test_a_name_under_a_namespace_the_cluster_lacks_is_one_answer_for_every_client_until_it_appears() -> None:
    """No pod can be in a namespace the snapshot lacks: the first try is kept once for everyone, not per namespace."""
    registry = registry_with(cluster(pod("shop", "web-0", SHOP_POD)))
    pipeline = pipeline_of(registry=registry)
    for peer in (SHOP_POD, NEW_POD, "192.0.2.9"):
        assert ask(pipeline, UNDER_NEW, peer=peer).rcode() == dns.rcode.NXDOMAIN
    assert not pipeline.table.namespaced and len(pipeline.table.entries) == 1
    registry.apply([Put(pod("new", "app-0", NEW_POD))], now=1_700_000_100)
    assert records(ask(pipeline, UNDER_NEW, peer=NEW_POD)) == [
        (UNDER_NEW, "CNAME", FOUND), (FOUND, "A", "10.96.0.10")]
    assert ask(pipeline, UNDER_NEW).rcode() == dns.rcode.NXDOMAIN


def test_a_change_to_a_name_the_walk_read_drops_the_kept_answers() -> None:
    registry = registry_with(cluster(pod("shop", "web-0", SHOP_POD), pod("data", "pg-0", DATA_POD)))
    pipeline = pipeline_of(registry=registry)
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"
    assert ask(pipeline, SEARCHED, peer=DATA_POD).rcode() == dns.rcode.NXDOMAIN
    registry.apply([Remove(("Service", "shop", "frontend"))], now=1_700_000_100)
    assert not pipeline.table.namespaced
    assert ask(pipeline, SEARCHED).rcode() == dns.rcode.NXDOMAIN
    frontend = next(r for r in cluster() if getattr(r, "name", "") == "frontend")
    registry.apply([Put(frontend)], now=1_700_000_200)
    assert records(ask(pipeline, SEARCHED))[0][1] == "CNAME"


def test_a_name_outside_the_cluster_is_forwarded_behind_a_cname() -> None:
    """www.example.com asked as www.example.com.shop.svc.Z: the cluster's tries are NXDOMAIN, then upstream."""
    corefile = COREFILE.replace("cluster.local {\n    kubernetes", ". {\n    forward . 192.0.2.53\n    kubernetes")
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD), corefile=corefile)
    asked = "www.example.com.shop.svc.cluster.local."
    reply = ask(pipeline, asked)
    assert reply.rcode() == dns.rcode.NOERROR
    assert records(reply) == [(asked, "CNAME", "www.example.com."), ("www.example.com.", "A", "192.0.2.10")]
    assert fakes(pipeline)[0].asked == ["www.example.com."]
    assert ask(pipeline, asked, peer="192.0.2.9").rcode() == dns.rcode.NXDOMAIN  # no pod: not walked


def test_an_upstream_nxdomain_ends_the_walk_with_its_rcode() -> None:
    corefile = COREFILE.replace("cluster.local {\n    kubernetes", ". {\n    forward . 192.0.2.53\n    kubernetes")
    pipeline = pipeline_of(pod("shop", "web-0", SHOP_POD), corefile=corefile)
    reply = ask(pipeline, "nowhere.example.shop.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_each_reply_the_walk_found_counts_as_an_autopath_success() -> None:
    metrics = Metrics()
    pipeline = pipeline_for(settings=block_of(COREFILE), registry=registry_with(cluster(pod("shop", "w", SHOP_POD))),
                            metrics=metrics.queries)
    ask(pipeline, SEARCHED)
    ask(pipeline, SEARCHED, via_tcp=True)
    ask(pipeline, "nothing.shop.svc.cluster.local.")  # every try NXDOMAIN: no success
    ask(pipeline, SEARCHED, peer="192.0.2.9")  # no pod: no success
    text = generate_latest(metrics.registry).decode()
    assert [line for line in text.splitlines() if line.startswith("coredns_autopath_success_total")] == [
        'coredns_autopath_success_total{server="dns://:53"} 2.0']
    assert 'plugin="autopath",rcode="NOERROR"' in text


def test_the_resolv_conf_form_walks_its_search_domains_for_every_client() -> None:
    """template answers NXDOMAIN for a.example, hosts knows db.b.example."""
    corefile = (". {\n    template IN A a.example {\n        rcode NXDOMAIN\n    }\n"
                "    hosts\n    autopath /etc/my.conf\n}\n")
    block = block_of(corefile, {"/etc/my.conf": "search a.example b.example\n"})
    pipeline = pipeline_for(settings=block, registry=registry_with(cluster()),
                            hosts=HostsTable.build([HostsEntry("10.0.0.7", ("db.b.example",))]))
    for peer in ("192.0.2.9", SHOP_POD):
        reply = ask(pipeline, "db.a.example.", peer=peer)
        assert records(reply) == [("db.a.example.", "CNAME", "db.b.example."), ("db.b.example.", "A", "10.0.0.7")]
    assert records(ask(pipeline, "a.example.")) == []  # the first element itself: as without autopath
