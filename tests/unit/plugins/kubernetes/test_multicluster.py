"""The kubernetes plugin's `multicluster` zones: the directive, and clusterset.local answered through the router.

The cluster is tests/data/multicluster: a local cluster (namespaces web and db, a ClusterIP service
`frontend` and a headless `cassandra` with local endpoints, `local-only` with no import), three
ServiceImports (ClusterSetIP `frontend`, headless `cassandra` with ready endpoints in clusters east
and west, headless `idle` with none ready) and their EndpointSlices, as an MCS implementation writes
them.  Expected answers follow CoreDNS's kubernetes plugin (findMultiClusterServices, its
multicluster test cases) and the MCS DNS specification.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dns_server.cluster.records import (
    KINDS,
    MULTICLUSTER_KINDS,
    Endpoint,
    MalformedObject,
    MulticlusterSlice,
    Port,
    Record,
    ServiceImport,
    convert,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.fixtures import FixtureSource
from dns_server.cluster.sources.kube import resources_for
from dns_server.cluster.updates import Put, Remove, Replace
from dns_server.config.corefile import parse_text
from dns_server.config.model import ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.plugins.kubernetes import settings_of
from dns_server.serving.router import Pipeline
from tests.cluster_data import manifest_objects, records_from
from tests.doubles import ask, pipeline_for

DATA = Path(__file__).resolve().parents[3] / "data" / "multicluster"
CLUSTERSET = "svc.clusterset.local."
COREFILE = """cluster.local clusterset.local {
    kubernetes cluster.local clusterset.local {
        multicluster clusterset.local
        ttl 7
    }
}
"""
ALL_KINDS = frozenset(KINDS + MULTICLUSTER_KINDS)


def block_of(text: str) -> ServerBlock:
    return build_config(parse_text(text)).blocks[0]


def cluster_records() -> list[Record]:
    return records_from(o for path in sorted(DATA.glob("*.yaml")) for o in manifest_objects(path))


def registry_of(records: list[Record], kinds: frozenset[str] = ALL_KINDS) -> Registry:
    registry = Registry(required_kinds=kinds)
    registry.apply([Replace(kinds, tuple(records))], now=1_700_000_000)
    return registry


@pytest.fixture
def pipeline() -> Pipeline:
    return pipeline_for(registry=registry_of(cluster_records()), settings=block_of(COREFILE))


def answers(reply: dns.message.Message, section: str = "answer") -> set[str]:
    """`name TTL type data` of every record in a section."""
    return {f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
            for rrset in getattr(reply, section) for rdata in rrset}


# -- the directive ----------------------------------------------------------------------------------------

def test_multicluster_names_zones_the_plugin_serves() -> None:
    settings = settings_of(block_of(COREFILE))
    assert settings is not None
    assert settings.multicluster == ("clusterset.local",)
    assert settings.source.multicluster


def test_a_multicluster_zone_the_plugin_does_not_serve_is_refused_naming_it() -> None:
    text = "cluster.local clusterset.local {\n    kubernetes cluster.local {\n        multicluster clusterset.local\n    }\n}\n"
    with pytest.raises(CorefileError) as refused:
        block_of(text)
    assert str(refused.value) == (
        "plugin/kubernetes: Corefile:3 - Error during parsing: is not authoritative for the multicluster zone "
        "clusterset.local. (authoritative zones: [cluster.local.])")


def test_multicluster_without_zones_starts_and_makes_no_zone_multicluster(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings = settings_of(block_of("cluster.local {\n    kubernetes {\n        multicluster\n    }\n}\n"))
    assert settings is not None and settings.multicluster == () and not settings.source.multicluster
    assert "Corefile:3 - multicluster without zones makes no zone multicluster" in caplog.text


def test_multicluster_is_read_and_watched_only_when_configured() -> None:
    on = settings_of(block_of(COREFILE))
    off = settings_of(block_of("cluster.local {\n    kubernetes\n}\n"))
    assert on is not None and off is not None
    assert on.source.required_kinds == ALL_KINDS - {"Pod"}
    assert off.source.required_kinds == frozenset(KINDS) - {"Pod"}
    assert [r.kind for r in resources_for(off.source)] == ["Namespace", "Service", "EndpointSlice"]
    assert [r.kind for r in resources_for(on.source)] == [
        "Namespace", "Service", "EndpointSlice", "ServiceImport", "MulticlusterEndpointSlice"]


def test_without_multicluster_the_fixture_source_keeps_no_import() -> None:
    registry = Registry(required_kinds=KINDS)
    FixtureSource(DATA, registry, kinds=frozenset(KINDS)).load()
    assert registry.snapshot.synced and registry.snapshot.imports == {}
    assert set(registry.counts()) == {"Namespace", "Service", "EndpointSlice"}


# -- the records --------------------------------------------------------------------------------------------

def test_a_service_import_and_its_slices_become_slim_records() -> None:
    records = {r.key: r for r in cluster_records()}
    assert records[("ServiceImport", "web", "frontend")] == ServiceImport(
        "web", "frontend", ("245.0.0.20",), False, (Port("http", "TCP", 80), Port("metrics", "TCP", 9090)))
    assert records[("MulticlusterEndpointSlice", "db", "cassandra-west-8sd7w")] == MulticlusterSlice(
        "db", "cassandra-west-8sd7w", "cassandra", "west", (Endpoint(("10.2.0.1",), True, "cassandra-0", ""),),
        (Port("cql", "TCP", 9042),))
    assert ("EndpointSlice", "web", "frontend-east-h3k8d") not in records  # never a local service's slice


@pytest.mark.parametrize("spec, reason", [
    ({"type": "LoadBalancer"}, "spec.type 'LoadBalancer' is neither ClusterSetIP nor Headless"),
    ({"type": "ClusterSetIP", "ips": ["245.0.0.300"]}, "spec.ips[0] '245.0.0.300' is not an IP address"),
    ({"ports": [{"port": 0}]}, "spec.ports[0].port 0 is not a port number"),
])
def test_a_malformed_service_import_says_which_field(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedObject, match=re.escape(reason)):
        convert({"kind": "ServiceImport", "metadata": {"name": "x", "namespace": "y"}, "spec": spec})


# -- ClusterSetIP imports -------------------------------------------------------------------------------------

def test_a_clusterset_ip_import_answers_its_ips(pipeline: Pipeline) -> None:
    reply = ask(pipeline, "frontend.web." + CLUSTERSET, "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert answers(reply) == {"frontend.web.svc.clusterset.local. 7 A 245.0.0.20"}


def test_the_other_family_of_a_clusterset_ip_import_is_nodata(pipeline: Pipeline) -> None:
    reply = ask(pipeline, "frontend.web." + CLUSTERSET, "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert answers(reply, "authority") == {
        "clusterset.local. 7 SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1700000000 7200 1800 86400 7"}


def test_srv_of_a_clusterset_ip_import_lists_every_port_with_the_service_as_target(pipeline: Pipeline) -> None:
    reply = ask(pipeline, "frontend.web." + CLUSTERSET, "SRV")
    assert answers(reply) == {"frontend.web.svc.clusterset.local. 7 SRV 0 50 80 frontend.web.svc.clusterset.local.",
                              "frontend.web.svc.clusterset.local. 7 SRV 0 50 9090 frontend.web.svc.clusterset.local."}
    assert answers(reply, "additional") == {"frontend.web.svc.clusterset.local. 7 A 245.0.0.20"}


def test_a_named_port_of_a_clusterset_ip_import(pipeline: Pipeline) -> None:
    name = "_http._tcp.frontend.web." + CLUSTERSET
    assert answers(ask(pipeline, name, "SRV")) == {f"{name} 7 SRV 0 100 80 frontend.web.svc.clusterset.local."}
    nodata = ask(pipeline, name, "A")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert ask(pipeline, "_http._udp.frontend.web." + CLUSTERSET, "SRV").rcode() == dns.rcode.NXDOMAIN


def test_endpoints_of_a_clusterset_ip_import_are_named_under_their_cluster(pipeline: Pipeline) -> None:
    """As CoreDNS: an endpoint name answers for a ClusterSetIP import too (from its multicluster slices)."""
    assert answers(ask(pipeline, "fe-0.east.frontend.web." + CLUSTERSET, "A")) == {
        "fe-0.east.frontend.web.svc.clusterset.local. 7 A 10.1.5.5"}


# -- headless imports -------------------------------------------------------------------------------------------

def test_a_headless_import_answers_the_ready_endpoints_of_every_cluster(pipeline: Pipeline) -> None:
    """Not 10.1.0.3 (not ready), nor 10.3.0.1 (its slice names no source cluster), nor the local 10.244.1.1."""
    reply = ask(pipeline, "cassandra.db." + CLUSTERSET, "A")
    assert answers(reply) == {f"cassandra.db.svc.clusterset.local. 7 A {a}" for a in ("10.1.0.1", "10.1.0.2", "10.2.0.1")}


def test_srv_of_a_headless_import_names_each_endpoint_under_its_cluster(pipeline: Pipeline) -> None:
    for name in ("cassandra.db." + CLUSTERSET, "_cql._tcp.cassandra.db." + CLUSTERSET):
        reply = ask(pipeline, name, "SRV")
        assert answers(reply) == {f"{name} 7 SRV 0 33 9042 {target}.cassandra.db.svc.clusterset.local."
                                  for target in ("cassandra-0.east", "10-1-0-2.east", "cassandra-0.west")}
        assert answers(reply, "additional") == {
            "cassandra-0.east.cassandra.db.svc.clusterset.local. 7 A 10.1.0.1",
            "10-1-0-2.east.cassandra.db.svc.clusterset.local. 7 A 10.1.0.2",
            "cassandra-0.west.cassandra.db.svc.clusterset.local. 7 A 10.2.0.1"}


@pytest.mark.parametrize("name, address", [
    ("cassandra-0.east", "10.1.0.1"),
    ("cassandra-0.west", "10.2.0.1"),
    ("10-1-0-2.east", "10.1.0.2"),
])
def test_an_endpoint_name_of_a_headless_import(pipeline: Pipeline, name: str, address: str) -> None:
    owner = f"{name}.cassandra.db.{CLUSTERSET}"
    assert answers(ask(pipeline, owner, "A")) == {f"{owner} 7 A {address}"}


@pytest.mark.parametrize("name", [
    "cassandra-0.cassandra.db",  # an endpoint without its cluster
    "east.cassandra.db",  # a cluster id alone
    "cassandra-2.east.cassandra.db",  # not ready
    "cassandra-0.north.cassandra.db",  # no such cluster
    "idle.db",  # headless, nothing ready
    "local-only.web",  # a local Service, no ServiceImport
    "nothing.web",
])
def test_names_with_no_import_endpoint_are_nxdomain_with_the_clusterset_soa(pipeline: Pipeline, name: str) -> None:
    reply = ask(pipeline, f"{name}.{CLUSTERSET}", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.name.to_text() for rrset in reply.authority] == ["clusterset.local."]


def test_local_slices_never_feed_the_clusterset_zone_nor_imported_slices_the_cluster_zone(pipeline: Pipeline) -> None:
    local = ask(pipeline, "cassandra.db.svc.cluster.local.", "A")
    assert answers(local) == {"cassandra.db.svc.cluster.local. 7 A 10.244.1.1"}
    assert "10.244.1.1" not in str(ask(pipeline, "cassandra.db." + CLUSTERSET, "A"))
    assert answers(ask(pipeline, "frontend.web.svc.cluster.local.", "A")) == {
        "frontend.web.svc.cluster.local. 7 A 10.96.0.20"}
    # frontend-east-h3k8d also carries kubernetes.io/service-name: frontend; its fe-0 stays in the cluster set
    assert ask(pipeline, "fe-0.frontend.web.svc.cluster.local.", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(pipeline, "10-1-5-5.frontend.web.svc.cluster.local.", "A").rcode() == dns.rcode.NXDOMAIN


def test_ignore_empty_service_hides_a_clusterset_ip_import_without_ready_endpoints() -> None:
    records = cluster_records() + [ServiceImport("web", "quiet", ("245.0.0.30",), False, ())]
    corefile = COREFILE.replace("ttl 7", "ignore empty_service")
    pipeline = pipeline_for(registry=registry_of(records), settings=block_of(corefile))
    assert ask(pipeline, "quiet.web." + CLUSTERSET, "A").rcode() == dns.rcode.NXDOMAIN
    assert answers(ask(pipeline, "frontend.web." + CLUSTERSET, "A")) == {
        "frontend.web.svc.clusterset.local. 5 A 245.0.0.20"}  # fe-0 in east is ready


def test_an_external_name_pointing_into_the_cluster_set_is_followed_there() -> None:
    records = cluster_records() + records_from([{
        "kind": "Service", "metadata": {"name": "shared-frontend", "namespace": "web"},
        "spec": {"type": "ExternalName", "externalName": "frontend.web.svc.clusterset.local"}}])
    pipeline = pipeline_for(registry=registry_of(records), settings=block_of(COREFILE))
    assert answers(ask(pipeline, "shared-frontend.web.svc.cluster.local.", "A")) == {
        "shared-frontend.web.svc.cluster.local. 7 CNAME frontend.web.svc.clusterset.local.",
        "frontend.web.svc.clusterset.local. 7 A 245.0.0.20"}


# -- the rest of the zone ----------------------------------------------------------------------------------------

def test_the_clusterset_apex_answers_soa_and_ns_as_a_cluster_zone(pipeline: Pipeline) -> None:
    assert answers(ask(pipeline, "clusterset.local.", "SOA")) == {
        "clusterset.local. 7 SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1700000000 7200 1800 86400 7"}
    reply = ask(pipeline, "clusterset.local.", "NS")
    assert answers(reply) == {"clusterset.local. 7 NS ns.dns.clusterset.local."}
    assert answers(reply, "additional") == {"ns.dns.clusterset.local. 7 A 10.96.0.10"}


def test_dns_version_of_the_clusterset_zone_is_coredns_s(pipeline: Pipeline) -> None:
    assert answers(ask(pipeline, "dns-version.clusterset.local.", "TXT")) == {
        'dns-version.clusterset.local. 28800 TXT "1.1.0"'}


def test_a_namespace_of_the_clusterset_zone_is_nodata(pipeline: Pipeline) -> None:
    reply = ask(pipeline, "db." + CLUSTERSET, "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_without_multicluster_clusterset_local_is_an_ordinary_cluster_zone() -> None:
    text = "cluster.local clusterset.local {\n    kubernetes cluster.local clusterset.local\n}\n"
    plain = pipeline_for(registry=registry_of(cluster_records()), settings=block_of(text))
    assert answers(ask(plain, "local-only.web." + CLUSTERSET, "A")) == {
        "local-only.web.svc.clusterset.local. 5 A 10.96.0.21"}


# -- changes ------------------------------------------------------------------------------------------------------

def test_a_changed_service_import_is_answered_at_once() -> None:
    registry = registry_of(cluster_records())
    pipeline = pipeline_for(registry=registry, settings=block_of(COREFILE))
    name = "frontend.web." + CLUSTERSET
    assert answers(ask(pipeline, name, "A")) == {f"{name} 7 A 245.0.0.20"}
    registry.apply([Put(ServiceImport("web", "frontend", ("245.0.0.99",), False, ()))])
    assert answers(ask(pipeline, name, "A")) == {f"{name} 7 A 245.0.0.99"}
    registry.apply([Remove(("ServiceImport", "web", "frontend"))])
    assert ask(pipeline, name, "A").rcode() == dns.rcode.NXDOMAIN


def test_a_changed_multicluster_slice_is_answered_at_once_and_other_answers_stay_cached() -> None:
    registry = registry_of(cluster_records())
    pipeline = pipeline_for(registry=registry, settings=block_of(COREFILE))
    name = "idle.db." + CLUSTERSET
    assert ask(pipeline, name, "A").rcode() == dns.rcode.NXDOMAIN
    assert answers(ask(pipeline, "frontend.web." + CLUSTERSET, "A"))
    kept = len(pipeline.table)
    registry.apply([Put(MulticlusterSlice("db", "idle-east-77xkq", "idle", "east",
                                          (Endpoint(("10.1.9.9",), True, "", ""),), ()))])
    assert len(pipeline.table) == kept - 1  # only the idle answer was dropped
    assert answers(ask(pipeline, name, "A")) == {f"{name} 7 A 10.1.9.9"}
    registry.apply([Remove(("MulticlusterEndpointSlice", "db", "idle-east-77xkq"))])
    assert ask(pipeline, name, "A").rcode() == dns.rcode.NXDOMAIN
