"""The pure core, table-driven: (name, type) against the zones/ example cluster and a server block -> Answer.

Expected answers follow ../shared/DNS-BEHAVIOUR.md (Kubernetes DNS specification 1.1.0, CoreDNS's
kubernetes plugin where the specification is silent) and CoreDNS's plugin chain: hosts, then
kubernetes, then the forward directives; a name no plugin takes is SERVFAIL.  Every answer's
`depends` is checked exactly: the answer table drops cached replies by it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest
from dnslib import QTYPE

from dns_server.chain.chain import NO_PLUGIN
from dns_server.cluster.records import Endpoint, EndpointSlice, Namespace, Port, Service
from dns_server.cluster.snapshot import HOSTS, SYNCED, Snapshot
from dns_server.config.model import (
    FALLTHROUGH_ALL,
    NO_FALLTHROUGH,
    Fallthrough,
    ServerBlock,
)
from dns_server.plugins.hosts import HostsEntry, HostsSettings, HostsTable
from dns_server.plugins.kubernetes.setup import PodMode
from dns_server.plugins.kubernetes.zone import MAX_CNAME_CHAIN
from dns_server.protocol.answer import RR, Answer, Dependency, Outcome
from dns_server.serving.runtime import _open_cluster
from tests.cluster_data import ZONES as ZONES_DIRECTORY
from tests.cluster_data import (
    example_records,
    headless_manifest,
    records_from,
    registry_with,
)
from tests.doubles import Z, block, forward_to, resolve

SNAPSHOT = registry_with(example_records()).snapshot
FLAGS = block()


def show(rrs: tuple[RR, ...]) -> set[str]:
    def data(rr: RR) -> str:
        return " ".join(map(str, rr.data)) if isinstance(rr.data, tuple) else str(rr.data)
    return {f"{rr.name} {QTYPE.get(rr.rtype)} {data(rr)}" for rr in rrs}


def ask(name: str, qtype: str, settings: ServerBlock = FLAGS, snapshot: Snapshot = SNAPSHOT,
        hosts: HostsTable | None = None) -> Answer:
    return resolve(name, getattr(QTYPE, qtype), snapshot, settings, hosts)


def service(namespace: str, name: str) -> Dependency:
    return ("service", namespace, name)


def namespace(name: str) -> Dependency:
    return ("namespace", name)


POSITIVE = [
    # ClusterIP services, dual-stack, LoadBalancer
    (f"kubernetes.default.svc.{Z}", "A", {f"kubernetes.default.svc.{Z} A 10.96.0.1"}),
    (f"frontend.shop.svc.{Z}", "A", {f"frontend.shop.svc.{Z} A 10.96.10.20"}),
    (f"checkout.shop.svc.{Z}", "A", {f"checkout.shop.svc.{Z} A 10.96.10.30"}),
    (f"checkout.shop.svc.{Z}", "AAAA", {f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"}),
    # SRV for named ports: weight 100/n, target the service, addresses as extra
    (f"_http._tcp.frontend.shop.svc.{Z}", "SRV", {f"_http._tcp.frontend.shop.svc.{Z} SRV 0 100 80 frontend.shop.svc.{Z}"}),
    (f"frontend.shop.svc.{Z}", "SRV", {f"frontend.shop.svc.{Z} SRV 0 50 80 frontend.shop.svc.{Z}",
                                        f"frontend.shop.svc.{Z} SRV 0 50 443 frontend.shop.svc.{Z}"}),
    (f"_dns._udp.kube-dns.kube-system.svc.{Z}", "SRV",
     {f"_dns._udp.kube-dns.kube-system.svc.{Z} SRV 0 100 53 kube-dns.kube-system.svc.{Z}"}),
    # headless: ready endpoints only, named by hostname or dashed address
    (f"postgres.data.svc.{Z}", "A", {f"postgres.data.svc.{Z} A 10.244.1.10", f"postgres.data.svc.{Z} A 10.244.2.11"}),
    (f"postgres-0.postgres.data.svc.{Z}", "A", {f"postgres-0.postgres.data.svc.{Z} A 10.244.1.10"}),
    (f"10-244-2-21.redis.data.svc.{Z}", "A", {f"10-244-2-21.redis.data.svc.{Z} A 10.244.2.21"}),
    (f"_postgres._tcp.postgres.data.svc.{Z}", "SRV",
     {f"_postgres._tcp.postgres.data.svc.{Z} SRV 0 50 5432 postgres-0.postgres.data.svc.{Z}",
      f"_postgres._tcp.postgres.data.svc.{Z} SRV 0 50 5432 postgres-1.postgres.data.svc.{Z}"}),
    # endpoint names under a ClusterIP service (CoreDNS answers these too)
    (f"10-244-1-5.frontend.shop.svc.{Z}", "A", {f"10-244-1-5.frontend.shop.svc.{Z} A 10.244.1.5"}),
    # ExternalName: CNAME alone for a CNAME query; in-zone targets chased
    (f"payments-api.shop.svc.{Z}", "CNAME", {f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"}),
    (f"storefront.shop.svc.{Z}", "A", {f"storefront.shop.svc.{Z} CNAME frontend.shop.svc.{Z}",
                                        f"frontend.shop.svc.{Z} A 10.96.10.20"}),
    # reverse
    ("1.0.96.10.in-addr.arpa", "PTR", {f"1.0.96.10.in-addr.arpa PTR kubernetes.default.svc.{Z}"}),
    ("10.1.244.10.in-addr.arpa", "PTR", {f"10.1.244.10.in-addr.arpa PTR postgres-0.postgres.data.svc.{Z}"}),
    ("0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa", "PTR",
     {f"0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa PTR checkout.shop.svc.{Z}"}),
    # pods (the flags' default: insecure)
    (f"10-244-9-9.shop.pod.{Z}", "A", {f"10-244-9-9.shop.pod.{Z} A 10.244.9.9"}),
    (f"fd00--1.shop.pod.{Z}", "AAAA", {f"fd00--1.shop.pod.{Z} AAAA fd00::1"}),
    # zone records
    (f"dns-version.{Z}", "TXT", {f"dns-version.{Z} TXT 1.1.0"}),
    (Z, "NS", {f"{Z} NS ns.dns.{Z}"}),
    (f"ns.dns.{Z}", "A", {f"ns.dns.{Z} A 10.96.0.10"}),
]


@pytest.mark.parametrize("name, qtype, expected", POSITIVE)
def test_positive_answers(name: str, qtype: str, expected: set[str]) -> None:
    answer = ask(name, qtype)
    assert (answer.outcome, show(answer.answer)) == (Outcome.ANSWER, expected)
    assert answer.outcome.authoritative and answer.plugin == "kubernetes"



@pytest.mark.parametrize("name, qtype", [(name, qtype) for name, qtype, _ in POSITIVE if "dns-version" not in name]
                         + [(f"_http._tcp.checkout.shop.svc.{Z}", "SRV")])  # a dual-stack target: A and AAAA extra
def test_every_record_and_extra_address_carries_the_kubernetes_ttl(name: str, qtype: str) -> None:
    answer = ask(name, qtype, block(ttl=17))
    assert answer.answer and {rr.ttl for rr in answer.answer + answer.additional} == {17}
    if qtype == "SRV" and "checkout" in name:
        assert {rr.rtype for rr in answer.additional} == {QTYPE.A, QTYPE.AAAA}


def test_a_dns_version_record_keeps_coredns_ttl() -> None:
    (txt,) = ask(f"dns-version.{Z}", "TXT", block(ttl=17)).answer
    assert txt.ttl == 28800


WITHOUT_KUBE_DNS = registry_with([r for r in example_records()
                                  if not (isinstance(r, Service) and r.name == "kube-dns")]).snapshot


@pytest.mark.parametrize("name, qtype, expected", [
    (f"ns.dns.{Z}", "A", {f"ns.dns.{Z} A 10.0.0.53"}),
    (f"ns.dns.{Z}", "AAAA", {f"ns.dns.{Z} AAAA fd00::53"}),
])
def test_without_the_kube_dns_service_ns_dns_is_the_blocks_bound_addresses_but_not_a_wildcard(
        name: str, qtype: str, expected: set[str]) -> None:
    settings = block(bind=("0.0.0.0", "10.0.0.53", "::", "fd00::53"), ttl=17)
    answer = ask(name, qtype, settings, WITHOUT_KUBE_DNS)
    assert (answer.outcome, show(answer.answer)) == (Outcome.ANSWER, expected)
    apex = ask(Z, "NS", settings, WITHOUT_KUBE_DNS)
    assert show(apex.additional) == {f"ns.dns.{Z} A 10.0.0.53", f"ns.dns.{Z} AAAA fd00::53"}
    assert {rr.ttl for rr in apex.additional} == {17}


def test_without_the_kube_dns_service_or_a_bound_address_ns_dns_has_no_addresses() -> None:
    answer = ask(f"ns.dns.{Z}", "A", block(bind=("0.0.0.0",)), WITHOUT_KUBE_DNS)  # a wildcard is no address
    assert answer.outcome is Outcome.NODATA


# A headless service whose spec declares no ports (its slices do), and whose two slices list one address under
# two names: the hostname in one, none (so the dashed address) in the other.
ODD_HEADLESS = registry_with(example_records() + [
    Namespace("odd"), Service("odd", "cache", (), True, "", ()),
    EndpointSlice("odd", "cache-a", "cache", (Endpoint(("10.1.0.1",), True, "cache-0", ""),), (Port("redis", "TCP", 6379),)),
    EndpointSlice("odd", "cache-b", "cache", (Endpoint(("10.1.0.1",), True, "", ""),), (Port("redis", "TCP", 6379),)),
]).snapshot


def test_a_headless_service_answers_one_address_once_though_two_endpoint_names_list_it() -> None:
    answer = ask(f"cache.odd.svc.{Z}", "A", snapshot=ODD_HEADLESS)
    assert [rr.data for rr in answer.answer] == ["10.1.0.1"]


def test_a_headless_services_named_ports_are_its_endpoints_ports() -> None:
    answer = ask(f"_redis._tcp.cache.odd.svc.{Z}", "SRV", snapshot=ODD_HEADLESS)
    assert answer.outcome is Outcome.ANSWER
    assert show(answer.answer) == {f"_redis._tcp.cache.odd.svc.{Z} SRV 0 50 6379 cache-0.cache.odd.svc.{Z}",
                                   f"_redis._tcp.cache.odd.svc.{Z} SRV 0 50 6379 10-1-0-1.cache.odd.svc.{Z}"}

NEGATIVE = [
    # NXDOMAIN: names that do not exist
    (f"nope.shop.svc.{Z}", "A", Outcome.NXDOMAIN),
    (f"frontend.nope.svc.{Z}", "A", Outcome.NXDOMAIN),
    (f"nope.svc.{Z}", "A", Outcome.NXDOMAIN),
    (f"postgres-2.postgres.data.svc.{Z}", "A", Outcome.NXDOMAIN),  # not ready
    (f"_nope._tcp.frontend.shop.svc.{Z}", "SRV", Outcome.NXDOMAIN),
    (f"_http._udp.frontend.shop.svc.{Z}", "SRV", Outcome.NXDOMAIN),
    (f"a.b.c.frontend.shop.svc.{Z}", "A", Outcome.NXDOMAIN),
    (f"frontend.shop.svc.{Z}.shop.svc.{Z}", "A", Outcome.NXDOMAIN),  # a search-path miss
    (f"api.github.com.{Z}", "A", Outcome.NXDOMAIN),
    (f"foo.bar.{Z}", "A", Outcome.NXDOMAIN),
    (f"foo.dns.{Z}", "A", Outcome.NXDOMAIN),
    (f"not-an-ip.shop.pod.{Z}", "A", Outcome.NXDOMAIN),
    (f"10-244-9-9.nope.pod.{Z}", "A", Outcome.NXDOMAIN),
    (f"nope.pod.{Z}", "A", Outcome.NXDOMAIN),
    # NODATA: the name exists, the type does not
    (f"frontend.shop.svc.{Z}", "AAAA", Outcome.NODATA),
    (f"frontend.shop.svc.{Z}", "TXT", Outcome.NODATA),
    (f"postgres.data.svc.{Z}", "AAAA", Outcome.NODATA),
    (f"_http._tcp.frontend.shop.svc.{Z}", "A", Outcome.NODATA),
    (f"payments-api.shop.svc.{Z}", "SRV", Outcome.NODATA),
    (Z, "A", Outcome.NODATA),
    (f"svc.{Z}", "A", Outcome.NODATA),
    (f"pod.{Z}", "A", Outcome.NODATA),
    (f"dns.{Z}", "A", Outcome.NODATA),  # the empty non-terminal above ns.dns.Z
    (f"shop.svc.{Z}", "A", Outcome.NODATA),
    (f"shop.pod.{Z}", "A", Outcome.NODATA),
    (f"dns-version.{Z}", "A", Outcome.NODATA),
    (f"10-244-9-9.shop.pod.{Z}", "AAAA", Outcome.NODATA),
    ("1.0.96.10.in-addr.arpa", "A", Outcome.NODATA),
]


@pytest.mark.parametrize("name, qtype, outcome", NEGATIVE)
def test_negative_answers_carry_the_zone_soa(name: str, qtype: str, outcome: Outcome) -> None:
    answer = ask(name, qtype)
    assert answer.outcome is outcome
    assert answer.answer == ()
    assert [(rr.name, rr.rtype) for rr in answer.authority] == [
        ("in-addr.arpa" if name.endswith("in-addr.arpa") else Z, QTYPE.SOA)]
    assert answer.outcome.authoritative


def test_soa_fields() -> None:
    (soa,) = ask(Z, "SOA").answer
    mname, rname, serial, refresh, retry, expire, minimum = soa.data  # type: ignore[misc]
    assert (mname, rname, refresh, retry, expire, minimum) == (f"ns.dns.{Z}", f"hostmaster.{Z}", 7200, 1800, 86400, 5)
    assert serial == SNAPSHOT.serial and soa.ttl == 5


@pytest.mark.parametrize("ttl, soa_ttl", [(3600, 300), (300, 300), (30, 30), (0, 0)])
def test_the_soa_record_ttl_is_the_ttl_capped_at_300_and_its_minimum_the_ttl(ttl: int, soa_ttl: int) -> None:
    settings = block(ttl=ttl)
    (soa,) = ask(Z, "SOA", settings).answer
    (negative,) = ask(f"nope.shop.svc.{Z}", "A", settings).authority
    assert soa.ttl == negative.ttl == soa_ttl  # CoreDNS: min(ttl, 300)
    assert soa.data[6] == negative.data[6] == ttl  # type: ignore[index]
    assert ask(f"frontend.shop.svc.{Z}", "A", settings).answer[0].ttl == ttl


def test_srv_additional_section_has_target_addresses() -> None:
    answer = ask(f"_postgres._tcp.postgres.data.svc.{Z}", "SRV")
    assert show(answer.additional) == {f"postgres-0.postgres.data.svc.{Z} A 10.244.1.10",
                                       f"postgres-1.postgres.data.svc.{Z} A 10.244.2.11"}
    dual = ask(f"_http._tcp.checkout.shop.svc.{Z}", "SRV")
    assert show(dual.additional) == {f"checkout.shop.svc.{Z} A 10.96.10.30",
                                     f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"}


def test_an_endpoint_two_slices_list_is_one_srv_record_with_one_address() -> None:
    """While the EndpointSlice controller moves an endpoint between slices, both may list it."""
    objects = headless_manifest("web", "dup", 1)
    moved = copy.deepcopy(objects[2])
    moved["metadata"]["name"] = "web-fghij"
    snapshot = registry_with(records_from([*objects, moved])).snapshot
    answer = ask(f"_http._tcp.web.dup.svc.{Z}", "SRV", snapshot=snapshot)
    assert [rr.data for rr in answer.answer] == [(0, 100, 80, f"10-200-0-1.web.dup.svc.{Z}")]
    assert [rr.data for rr in answer.additional] == ["10.200.0.1"]


def test_zone_transfers_are_refused() -> None:
    assert ask(Z, "AXFR").outcome is Outcome.REFUSED
    assert ask(Z, "IXFR").outcome is Outcome.REFUSED


def test_any_returns_every_record_of_the_name() -> None:
    answer = ask(f"checkout.shop.svc.{Z}", "ANY")
    addresses = [f"checkout.shop.svc.{Z} A 10.96.10.30", f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"]
    assert (answer.outcome, answer.plugin) == (Outcome.ANSWER, "kubernetes")
    assert [show((rr,)).pop() for rr in answer.answer] == [*addresses, f"checkout.shop.svc.{Z} SRV 0 100 8080 checkout.shop.svc.{Z}"]
    assert [show((rr,)).pop() for rr in answer.additional] == addresses  # the SRV record's, as for an SRV question
    srv = ask(f"_http._tcp.checkout.shop.svc.{Z}", "ANY")
    assert show(srv.answer) == {f"_http._tcp.checkout.shop.svc.{Z} SRV 0 100 8080 checkout.shop.svc.{Z}"}
    assert show(srv.additional) == {f"checkout.shop.svc.{Z} A 10.96.10.30", f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"}


@pytest.mark.parametrize("name, outcome", [(f"nope.shop.svc.{Z}", Outcome.NXDOMAIN), (f"shop.svc.{Z}", Outcome.NODATA)])
def test_any_for_a_name_without_records_is_its_negative_answer(name: str, outcome: Outcome) -> None:
    answer = ask(name, "ANY")
    assert answer == ask(name, "A")
    assert (answer.outcome, answer.plugin, [rr.rtype for rr in answer.authority]) == (outcome, "kubernetes", [QTYPE.SOA])


def test_the_apex_ns_record_comes_with_the_cluster_dns_service_address_as_glue() -> None:
    answer = ask(Z, "NS", block(ttl=30))
    assert answer.answer == (RR(Z, QTYPE.NS, 30, f"ns.dns.{Z}"),)
    assert answer.additional == (RR(f"ns.dns.{Z}", QTYPE.A, 30, "10.96.0.10"),)
    assert answer.plugin == "kubernetes"


def test_ttl_is_configurable_but_not_dns_versions() -> None:
    settings = block(ttl=30)
    (record,) = ask(f"frontend.shop.svc.{Z}", "A", settings).answer
    assert record.ttl == 30
    assert ask(f"dns-version.{Z}", "TXT", settings).answer[0].ttl == 28800


def test_endpoint_pod_names() -> None:
    snapshot = registry_with(example_records(), endpoint_pod_names=True).snapshot
    answer = ask(f"redis-7f9c6-2mxkq.redis.data.svc.{Z}", "A", snapshot=snapshot)
    assert show(answer.answer) == {f"redis-7f9c6-2mxkq.redis.data.svc.{Z} A 10.244.1.20"}
    assert ask(f"postgres-0.postgres.data.svc.{Z}", "A", snapshot=snapshot).outcome is Outcome.ANSWER  # hostname wins


def test_another_cluster_domain() -> None:
    settings = block(zones=("k8s.example", "in-addr.arpa", "ip6.arpa"))
    assert show(ask("frontend.shop.svc.k8s.example", "A", settings).answer) == {
        "frontend.shop.svc.k8s.example A 10.96.10.20"}
    assert ask("1.0.96.10.in-addr.arpa", "PTR", settings).answer[0].data == "kubernetes.default.svc.k8s.example"
    assert ask(f"frontend.shop.svc.{Z}", "A", settings).outcome is Outcome.FORWARD


# -- several zones in one kubernetes plugin ---------------------------------------------------------
MULTI = block(zones=(Z, "example.local", "10.in-addr.arpa"), fallthrough=NO_FALLTHROUGH)
REVERSE_FIRST = block(zones=("10.in-addr.arpa", "example.local", Z), fallthrough=NO_FALLTHROUGH)

ZONES = [
    ("the second zone, from the same snapshot", MULTI, "frontend.shop.svc.example.local", "A",
     Outcome.ANSWER, {"frontend.shop.svc.example.local A 10.96.10.20"}),
    ("SRV targets in the zone asked", MULTI, "_http._tcp.frontend.shop.svc.example.local", "SRV",
     Outcome.ANSWER, {"_http._tcp.frontend.shop.svc.example.local SRV 0 100 80 frontend.shop.svc.example.local"}),
    ("PTR targets in the first non-reverse zone", MULTI, "1.0.96.10.in-addr.arpa", "PTR",
     Outcome.ANSWER, {f"1.0.96.10.in-addr.arpa PTR kubernetes.default.svc.{Z}"}),
    ("... even when a reverse zone comes first", REVERSE_FIRST, "1.0.96.10.in-addr.arpa", "PTR",
     Outcome.ANSWER, {"1.0.96.10.in-addr.arpa PTR kubernetes.default.svc.example.local"}),
    ("an address the reverse zone covers but the cluster lacks", MULTI, "9.9.9.10.in-addr.arpa", "PTR",
     Outcome.NXDOMAIN, set()),
    ("a reverse name outside the reverse zone", MULTI, "1.0.0.192.in-addr.arpa", "PTR", Outcome.FORWARD, set()),
    ("an ExternalName across zones", MULTI, "storefront.shop.svc.example.local", "A",
     Outcome.ANSWER, {f"storefront.shop.svc.example.local CNAME frontend.shop.svc.{Z}",
                      f"frontend.shop.svc.{Z} A 10.96.10.20"}),
]


@pytest.mark.parametrize("what, settings, name, qtype, outcome, records", ZONES, ids=[row[0] for row in ZONES])
def test_several_zones(what: str, settings: ServerBlock, name: str, qtype: str, outcome: Outcome,
                       records: set[str]) -> None:
    answer = ask(name, qtype, settings)
    assert (answer.outcome, show(answer.answer)) == (outcome, records)


@pytest.mark.parametrize("name, zone", [("nope.shop.svc.example.local", "example.local"),
                                        (f"nope.shop.svc.{Z}", Z), ("9.9.9.10.in-addr.arpa", "10.in-addr.arpa")])
def test_a_negative_answer_carries_the_soa_of_the_zone_the_name_is_in(name: str, zone: str) -> None:
    (soa,) = ask(name, "A", MULTI).authority
    assert soa.name == zone and soa.data[:2] == (f"ns.dns.{zone}", f"hostmaster.{zone}")  # type: ignore[index]


# -- fallthrough ---------------------------------------------------------------------------------
FALLTHROUGH = [
    # (fallthrough, name, type, snapshot synced, outcome)
    ("none", NO_FALLTHROUGH, f"nope.shop.svc.{Z}", "A", True, Outcome.NXDOMAIN),
    ("none, reverse", NO_FALLTHROUGH, "9.9.9.9.in-addr.arpa", "PTR", True, Outcome.NXDOMAIN),
    ("all zones", FALLTHROUGH_ALL, f"nope.shop.svc.{Z}", "A", True, Outcome.FORWARD),
    ("all zones, reverse", FALLTHROUGH_ALL, "9.9.9.9.in-addr.arpa", "PTR", True, Outcome.FORWARD),
    ("all zones: NODATA is an answer", FALLTHROUGH_ALL, f"frontend.shop.svc.{Z}", "AAAA", True, Outcome.NODATA),
    ("all zones: NOT_READY passes too", FALLTHROUGH_ALL, f"nope.shop.svc.{Z}", "A", False, Outcome.FORWARD),
    ("reverse zones only (the flags)", Fallthrough(("in-addr.arpa", "ip6.arpa")), f"nope.shop.svc.{Z}", "A", True,
     Outcome.NXDOMAIN),
    ("reverse zones only, reverse name", Fallthrough(("in-addr.arpa", "ip6.arpa")), "9.9.9.9.in-addr.arpa", "PTR",
     True, Outcome.FORWARD),
    ("reverse zones only, unsynced", Fallthrough(("in-addr.arpa",)), f"nope.shop.svc.{Z}", "A", False,
     Outcome.NOT_READY),
    ("a sub-zone", Fallthrough((f"shop.svc.{Z}",)), f"nope.shop.svc.{Z}", "A", True, Outcome.FORWARD),
    ("a sub-zone, a name outside it", Fallthrough((f"shop.svc.{Z}",)), f"nope.data.svc.{Z}", "A", True,
     Outcome.NXDOMAIN),
]


@pytest.mark.parametrize("what, fallthrough, name, qtype, synced, outcome", FALLTHROUGH,
                         ids=[row[0] for row in FALLTHROUGH])
def test_fallthrough(what: str, fallthrough: Fallthrough, name: str, qtype: str, synced: bool,
                     outcome: Outcome) -> None:
    snapshot = SNAPSHOT if synced else dataclasses.replace(SNAPSHOT, synced=False)
    answer = ask(name, qtype, block(fallthrough=fallthrough), snapshot)
    assert answer.outcome is outcome
    if outcome is Outcome.FORWARD:
        assert answer.forward == 0 and answer.answer == answer.authority == ()


def test_fallthrough_without_a_forward_is_servfail() -> None:
    answer = ask(f"nope.shop.svc.{Z}", "A", block(fallthrough=FALLTHROUGH_ALL, forward=()))
    assert (answer.outcome, answer.reason) == (Outcome.SERVFAIL, f"plugin/kubernetes: {NO_PLUGIN}")


def test_not_synced_turns_nxdomain_into_servfail_only() -> None:
    unsynced = dataclasses.replace(SNAPSHOT, synced=False)
    assert ask(f"nope.shop.svc.{Z}", "A", snapshot=unsynced).outcome is Outcome.NOT_READY
    assert ask(f"nope.shop.svc.{Z}", "A", snapshot=unsynced).rcode == 2  # SERVFAIL
    assert ask(f"frontend.shop.svc.{Z}", "A", snapshot=unsynced).outcome is Outcome.ANSWER
    assert ask(f"shop.svc.{Z}", "A", snapshot=unsynced).outcome is Outcome.NODATA
    assert ask("example.com", "A", snapshot=unsynced).outcome is Outcome.FORWARD


# -- forward directives ------------------------------------------------------------------------------
FORWARDS = (forward_to("example.com", except_zones=("corp.example.com",)), forward_to("", except_zones=("internal",)))


@pytest.mark.parametrize("forwards, name, index", [
    (FORWARDS, "www.example.com", 0),
    (FORWARDS, "db.corp.example.com", 1),  # `except` on the first; the second takes it
    (FORWARDS, "www.example.org", 1),
    (FORWARDS, "host.internal", -1),  # nobody takes it
    ((forward_to(""), forward_to("example.com")), "www.example.com", 0),  # the first that takes it, not the longest
    ((), "www.example.com", -1),
])
def test_the_first_forward_directive_that_takes_the_name_gets_it(forwards: tuple, name: str, index: int) -> None:
    answer = ask(name, "A", block(forward=forwards))
    if index < 0:
        # CoreDNS: the last plugin of the chain has no next one
        last = "forward" if forwards else "kubernetes"
        assert (answer.outcome, answer.reason) == (Outcome.SERVFAIL, f"plugin/{last}: {NO_PLUGIN}")
    else:
        assert (answer.outcome, answer.forward) == (Outcome.FORWARD, index)
    assert not answer.outcome.authoritative


# -- ExternalName ----------------------------------------------------------------------------------
EXTERNAL = example_records() + [
    Service("shop", "loop-a", (), False, f"loop-b.shop.svc.{Z}", ()),
    Service("shop", "loop-b", (), False, f"loop-a.shop.svc.{Z}", ()),
    Service("shop", "to-payments", (), False, f"payments-api.shop.svc.{Z}", ()),
    Service("shop", "by-ip", (), False, "192.0.2.1", ()),
    Service("shop", "dangling", (), False, f"nope.shop.svc.{Z}", ()),
    Service("shop", "corp-db", (), False, "db.corp.example", ()),
    Service("shop", "apex", (), False, Z, ()),
]
EXTERNAL_SNAPSHOT = registry_with(EXTERNAL).snapshot
TWO_FORWARDS = block(forward=(forward_to("corp.example"), forward_to("")))

CHAINS = [
    ("an in-cluster target is followed", FLAGS, "storefront", "A", Outcome.ANSWER,
     [f"storefront.shop.svc.{Z} CNAME frontend.shop.svc.{Z}", f"frontend.shop.svc.{Z} A 10.96.10.20"], -1, ""),
    ("an in-cluster target without the type: the CNAME and the SOA", FLAGS, "storefront", "AAAA", Outcome.ANSWER,
     [f"storefront.shop.svc.{Z} CNAME frontend.shop.svc.{Z}"], -1, ""),
    ("an in-cluster target that does not exist", FLAGS, "dangling", "A", Outcome.NXDOMAIN,
     [f"dangling.shop.svc.{Z} CNAME nope.shop.svc.{Z}"], -1, ""),
    ("an outside target is chased upstream", FLAGS, "payments-api", "A", Outcome.CHASE,
     [f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"], 0, "api.payments.example.com"),
    ("... by the forward directive that takes the target", TWO_FORWARDS, "corp-db", "A", Outcome.CHASE,
     [f"corp-db.shop.svc.{Z} CNAME db.corp.example"], 0, "db.corp.example"),
    ("... the second one", TWO_FORWARDS, "payments-api", "A", Outcome.CHASE,
     [f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"], 1, "api.payments.example.com"),
    ("no forward takes the target: the CNAME alone", block(forward=()), "payments-api", "A", Outcome.ANSWER,
     [f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"], -1, ""),
    ("a CNAME question: the CNAME alone", FLAGS, "payments-api", "CNAME", Outcome.ANSWER,
     [f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"], -1, ""),
    ("an IP-valued externalName", FLAGS, "by-ip", "A", Outcome.NXDOMAIN, [], -1, ""),
    ("a chain that leaves the cluster is chased from its last name", FLAGS, "to-payments", "A", Outcome.CHASE,
     [f"to-payments.shop.svc.{Z} CNAME payments-api.shop.svc.{Z}",
      f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"], 0, "api.payments.example.com"),
]


@pytest.mark.parametrize("what, settings, svc, qtype, outcome, records, forward, chase", CHAINS,
                         ids=[row[0] for row in CHAINS])
def test_external_name(what: str, settings: ServerBlock, svc: str, qtype: str, outcome: Outcome, records: list[str],
                       forward: int, chase: str) -> None:
    answer = ask(f"{svc}.shop.svc.{Z}", qtype, settings, EXTERNAL_SNAPSHOT)
    assert answer.outcome is outcome
    assert [show((rr,)).pop() for rr in answer.answer] == records  # the CNAME first
    assert (answer.forward, answer.chase) == (forward, chase)
    assert bool(answer.authority) == (outcome is Outcome.NXDOMAIN or qtype == "AAAA")
    assert answer.plugin == "kubernetes"


def test_fallthrough_keeps_the_cname_of_a_name_that_exists() -> None:
    """The ExternalName exists; only its in-cluster target does not: the CNAME and NXDOMAIN stay ours."""
    answer = ask(f"dangling.shop.svc.{Z}", "A", block(fallthrough=FALLTHROUGH_ALL), EXTERNAL_SNAPSHOT)
    assert answer.outcome is Outcome.NXDOMAIN
    assert [show((rr,)).pop() for rr in answer.answer] == [f"dangling.shop.svc.{Z} CNAME nope.shop.svc.{Z}"]


def test_a_cname_loop_ends_in_servfail() -> None:
    answer = ask(f"loop-a.shop.svc.{Z}", "A", snapshot=EXTERNAL_SNAPSHOT)
    assert (answer.outcome, answer.reason, answer.plugin) == (Outcome.SERVFAIL, "CNAME chain too long", "kubernetes")
    assert [rr.rtype for rr in answer.answer] == [QTYPE.CNAME] * (MAX_CNAME_CHAIN + 1)  # the name's, then 8 followed



def test_an_external_name_chased_to_the_apex_brings_the_ns_glue_along() -> None:
    answer = ask(f"apex.shop.svc.{Z}", "NS", snapshot=EXTERNAL_SNAPSHOT)
    assert show(answer.answer) == {f"apex.shop.svc.{Z} CNAME {Z}", f"{Z} NS ns.dns.{Z}"}
    assert show(answer.additional) == {f"ns.dns.{Z} A 10.96.0.10"}


# -- pods ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, name, outcome", [
    (PodMode.DISABLED, f"10-244-1-5.shop.pod.{Z}", Outcome.NXDOMAIN),
    (PodMode.DISABLED, f"shop.pod.{Z}", Outcome.NXDOMAIN),  # no pod names at all, not even the namespace
    (PodMode.DISABLED, f"pod.{Z}", Outcome.NODATA),
    (PodMode.INSECURE, f"10-244-1-99.shop.pod.{Z}", Outcome.ANSWER),  # any address
    (PodMode.INSECURE, f"shop.pod.{Z}", Outcome.NODATA),
    (PodMode.INSECURE, f"nope.pod.{Z}", Outcome.NXDOMAIN),
    (PodMode.VERIFIED, f"10-244-1-5.shop.pod.{Z}", Outcome.ANSWER),  # a running pod has it
    (PodMode.VERIFIED, f"10-244-1-99.shop.pod.{Z}", Outcome.NXDOMAIN),  # the pod Succeeded
    (PodMode.VERIFIED, f"10-244-1-5.data.pod.{Z}", Outcome.NXDOMAIN),  # wrong namespace
    (PodMode.VERIFIED, f"10-244-3-12.data.pod.{Z}", Outcome.ANSWER),  # Pending but has an IP
    (PodMode.VERIFIED, f"shop.pod.{Z}", Outcome.NODATA),
])
def test_pod_modes(mode: PodMode, name: str, outcome: Outcome) -> None:
    answer = ask(name, "A", block(pods=mode))
    assert answer.outcome is outcome
    if outcome is Outcome.ANSWER:
        assert [rr.data for rr in answer.answer] == [name.split(".")[0].replace("-", ".")]


# -- ignore empty_service ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, qtype, without, with_option", [
    (f"cart.shop.svc.{Z}", "A", Outcome.ANSWER, Outcome.NXDOMAIN),  # a ClusterIP service without endpoints
    (f"_grpc._tcp.cart.shop.svc.{Z}", "SRV", Outcome.ANSWER, Outcome.NXDOMAIN),
    (f"frontend.shop.svc.{Z}", "A", Outcome.ANSWER, Outcome.ANSWER),  # it has ready endpoints
    (f"postgres.data.svc.{Z}", "A", Outcome.ANSWER, Outcome.ANSWER),
])
def test_ignore_empty_service(name: str, qtype: str, without: Outcome, with_option: Outcome) -> None:
    assert ask(name, qtype).outcome is without
    assert ask(name, qtype, block(ignore_empty_service=True)).outcome is with_option


# -- hosts -----------------------------------------------------------------------------------------
HOSTS_TABLE = HostsTable.build([HostsEntry("10.0.0.1", ("router.lan",)), HostsEntry("fd00::1", ("router.lan",)),
                                HostsEntry("10.96.10.20", (f"web.{Z}",))])
NO_FILE = HostsSettings(path=None)


def hosts_block(**settings: object) -> ServerBlock:
    return block(hosts=dataclasses.replace(NO_FILE, **settings))


HOSTS_CASES = [
    ("A", hosts_block(), "router.lan", "A", Outcome.ANSWER, {"router.lan A 10.0.0.1"}, "hosts"),
    ("AAAA", hosts_block(), "router.lan", "AAAA", Outcome.ANSWER, {"router.lan AAAA fd00::1"}, "hosts"),
    ("another type of a known name: NODATA", hosts_block(), "router.lan", "TXT", Outcome.NODATA, set(), "hosts"),
    ("PTR", hosts_block(), "1.0.0.10.in-addr.arpa", "PTR", Outcome.ANSWER,
     {"1.0.0.10.in-addr.arpa PTR router.lan"}, "hosts"),
    ("PTR: hosts comes before kubernetes", hosts_block(), "20.10.96.10.in-addr.arpa", "PTR", Outcome.ANSWER,
     {f"20.10.96.10.in-addr.arpa PTR web.{Z}"}, "hosts"),
    ("PTR of an IPv6 address", hosts_block(), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
     "PTR", Outcome.ANSWER, {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa PTR router.lan"},
     "hosts"),
    ("no_reverse: PTR passes on", hosts_block(no_reverse=True), "1.0.0.10.in-addr.arpa", "PTR", Outcome.FORWARD,
     set(), ""),
    ("an unknown address always passes on", hosts_block(), "1.0.96.10.in-addr.arpa", "PTR", Outcome.ANSWER,
     {f"1.0.96.10.in-addr.arpa PTR kubernetes.default.svc.{Z}"}, "kubernetes"),
    ("an unknown name without fallthrough: SERVFAIL", hosts_block(), "nas.lan", "A", Outcome.SERVFAIL, set(),
     "hosts"),
    ("... even a cluster name in its zones", hosts_block(), f"frontend.shop.svc.{Z}", "A", Outcome.SERVFAIL, set(),
     "hosts"),
    ("an unknown name with fallthrough passes on", hosts_block(fallthrough=FALLTHROUGH_ALL), "nas.lan", "A",
     Outcome.FORWARD, set(), ""),
    ("fallthrough for other zones only: SERVFAIL", hosts_block(fallthrough=Fallthrough(("corp",))), "nas.lan", "A",
     Outcome.SERVFAIL, set(), "hosts"),
    ("fallthrough for its zone passes on", hosts_block(fallthrough=Fallthrough(("lan",))), "nas.lan", "A",
     Outcome.FORWARD, set(), ""),
    ("... to kubernetes", hosts_block(fallthrough=FALLTHROUGH_ALL), f"frontend.shop.svc.{Z}", "A", Outcome.ANSWER,
     {f"frontend.shop.svc.{Z} A 10.96.10.20"}, "kubernetes"),
    ("a name outside its zones passes on", hosts_block(zones=("lan",)), f"frontend.shop.svc.{Z}", "A",
     Outcome.ANSWER, {f"frontend.shop.svc.{Z} A 10.96.10.20"}, "kubernetes"),
    ("a hosts name in the cluster zone comes first", hosts_block(), f"web.{Z}", "A", Outcome.ANSWER,
     {f"web.{Z} A 10.96.10.20"}, "hosts"),
]


@pytest.mark.parametrize("what, settings, name, qtype, outcome, records, plugin", HOSTS_CASES,
                         ids=[row[0] for row in HOSTS_CASES])
def test_hosts(what: str, settings: ServerBlock, name: str, qtype: str, outcome: Outcome, records: set[str],
               plugin: str) -> None:
    answer = ask(name, qtype, settings, hosts=HOSTS_TABLE)
    assert (answer.outcome, show(answer.answer), answer.plugin) == (outcome, records, plugin)
    if plugin == "hosts":
        assert answer.authority == ()  # the hosts plugin has no SOA
        assert all(rr.ttl == 3600 for rr in answer.answer)  # its own TTL


# -- dependencies ----------------------------------------------------------------------------------
DEPENDS = [
    # (name, type, settings, snapshot, outcome, exactly these dependencies)
    (f"frontend.shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("shop", "frontend")}),
    (f"frontend.shop.svc.{Z}", "AAAA", FLAGS, SNAPSHOT, Outcome.NODATA, {service("shop", "frontend")}),
    (f"nope.shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NXDOMAIN, {service("shop", "nope")}),
    (f"10-244-1-5.frontend.shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("shop", "frontend")}),
    (f"_http._tcp.frontend.shop.svc.{Z}", "SRV", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("shop", "frontend")}),
    (f"checkout.shop.svc.{Z}", "ANY", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("shop", "checkout")}),
    (f"shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NODATA, {namespace("shop")}),
    (f"nope.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NXDOMAIN, {namespace("nope")}),
    (f"shop.pod.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NODATA, {namespace("shop")}),
    (f"10-244-9-9.shop.pod.{Z}", "A", FLAGS, SNAPSHOT, Outcome.ANSWER, {namespace("shop")}),
    (f"10-244-1-5.shop.pod.{Z}", "A", block(pods=PodMode.VERIFIED), SNAPSHOT, Outcome.ANSWER,
     {namespace("shop"), ("pod", "shop", "10.244.1.5")}),
    (f"10-244-1-5.shop.pod.{Z}", "A", block(pods=PodMode.DISABLED), SNAPSHOT, Outcome.NXDOMAIN, set()),
    (f"svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NODATA, set()),
    (Z, "SOA", FLAGS, SNAPSHOT, Outcome.ANSWER, set()),  # the serial is restamped, not a dependency
    (Z, "NS", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("kube-system", "kube-dns")}),
    (f"ns.dns.{Z}", "A", FLAGS, SNAPSHOT, Outcome.ANSWER, {service("kube-system", "kube-dns")}),
    (f"dns-version.{Z}", "TXT", FLAGS, SNAPSHOT, Outcome.ANSWER, set()),
    (f"foo.bar.{Z}", "A", FLAGS, SNAPSHOT, Outcome.NXDOMAIN, set()),
    (f"storefront.shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.ANSWER,
     {service("shop", "storefront"), service("shop", "frontend")}),
    (f"payments-api.shop.svc.{Z}", "A", FLAGS, SNAPSHOT, Outcome.CHASE, {service("shop", "payments-api")}),
    ("1.0.96.10.in-addr.arpa", "PTR", FLAGS, SNAPSHOT, Outcome.ANSWER, {("address", "10.96.0.1")}),
    ("9.9.9.9.in-addr.arpa", "PTR", FLAGS, SNAPSHOT, Outcome.FORWARD, {("address", "9.9.9.9")}),  # fell through
    ("1.2.in-addr.arpa", "PTR", FLAGS, SNAPSHOT, Outcome.FORWARD, set()),  # spells no address
    (f"nope.shop.svc.{Z}", "A", block(fallthrough=FALLTHROUGH_ALL), SNAPSHOT, Outcome.FORWARD,
     {service("shop", "nope")}),
    (f"nope.shop.svc.{Z}", "A", FLAGS, dataclasses.replace(SNAPSHOT, synced=False), Outcome.NOT_READY,
     {service("shop", "nope"), SYNCED}),
    ("example.com", "A", FLAGS, SNAPSHOT, Outcome.FORWARD, set()),
    ("example.com", "A", block(forward=()), SNAPSHOT, Outcome.SERVFAIL, set()),
]


@pytest.mark.parametrize("name, qtype, settings, snapshot, outcome, depends", DEPENDS,
                         ids=[f"{row[0]} {row[1]} {row[4].value}" for row in DEPENDS])
def test_every_answer_depends_on_exactly_what_it_read(name: str, qtype: str, settings: ServerBlock,
                                                       snapshot: Snapshot, outcome: Outcome,
                                                       depends: set[Dependency]) -> None:
    answer = ask(name, qtype, settings, snapshot)
    assert (answer.outcome, answer.depends) == (outcome, depends)


@pytest.mark.parametrize("name, qtype", [("router.lan", "A"), ("router.lan", "TXT"), ("nas.lan", "A"),
                                         ("1.0.0.10.in-addr.arpa", "PTR")])
def test_answers_of_the_hosts_plugin_depend_on_its_table(name: str, qtype: str) -> None:
    assert ask(name, qtype, hosts_block(), hosts=HOSTS_TABLE).depends == {HOSTS}


@pytest.mark.parametrize("name, qtype, settings", [
    (f"frontend.shop.svc.{Z}", "A", hosts_block(fallthrough=FALLTHROUGH_ALL)),  # to kubernetes
    ("nas.lan", "A", hosts_block(fallthrough=FALLTHROUGH_ALL)),  # to forward
    ("1.0.96.10.in-addr.arpa", "PTR", hosts_block()),  # an address without entries
])
def test_an_answer_the_hosts_plugin_passed_on_depends_on_its_table_too(name: str, qtype: str,
                                                                      settings: ServerBlock) -> None:
    """The next hosts table may have the name: a reload must drop what the plugins after it answered."""
    answer = ask(name, qtype, settings, hosts=HOSTS_TABLE)
    assert answer.plugin != "hosts" and HOSTS in answer.depends


# -- noendpoints -------------------------------------------------------------------------------------
def cluster_snapshot(settings: ServerBlock) -> Snapshot:
    """The snapshot of the cluster the runtime opens for a block: its registry, fed the zones/ fixture files."""
    assert settings.setting("kubernetes") is not None
    source = dataclasses.replace(settings.setting("kubernetes"), fixtures=ZONES_DIRECTORY).source

    async def opened() -> Snapshot:
        cluster = await _open_cluster(source, asyncio.get_running_loop())
        return cluster.registry.snapshot

    return asyncio.run(opened())


NOENDPOINTS = block(noendpoints=True)


@pytest.mark.parametrize("name, qtype, outcome", [
    (f"frontend.shop.svc.{Z}", "A", Outcome.ANSWER),  # a ClusterIP service needs no endpoints
    (f"_http._tcp.frontend.shop.svc.{Z}", "SRV", Outcome.ANSWER),
    ("1.0.96.10.in-addr.arpa", "PTR", Outcome.ANSWER),
    (f"postgres.data.svc.{Z}", "A", Outcome.NXDOMAIN),  # headless: nothing to answer with
    (f"_postgres._tcp.postgres.data.svc.{Z}", "SRV", Outcome.NXDOMAIN),
    (f"postgres-0.postgres.data.svc.{Z}", "A", Outcome.NXDOMAIN),  # endpoint names
    (f"10-244-1-5.frontend.shop.svc.{Z}", "A", Outcome.NXDOMAIN),
    ("10.1.244.10.in-addr.arpa", "PTR", Outcome.FORWARD),  # an endpoint's address is not the cluster's
])
def test_noendpoints_answers_no_endpoint_names_whatever_the_source_delivers(name: str, qtype: str,
                                                                           outcome: Outcome) -> None:
    """CoreDNS: "All endpoint queries and headless service queries will result in an NXDOMAIN"; fixture
    files hold EndpointSlices, which the registry of a `noendpoints` block must not serve."""
    snapshot = cluster_snapshot(NOENDPOINTS)
    assert snapshot.synced  # without EndpointSlices to wait for
    assert ask(name, qtype, NOENDPOINTS, snapshot).outcome is outcome
    assert ask(name, qtype, FLAGS, cluster_snapshot(FLAGS)).outcome is Outcome.ANSWER  # without the option
