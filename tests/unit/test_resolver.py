"""The pure core, table-driven: (qname, qtype) against the zones/ example cluster -> rcode and records.

Expected answers follow ../shared/DNS-BEHAVIOUR.md (Kubernetes DNS specification 1.1.0, CoreDNS's
kubernetes plugin where the specification is silent).
"""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from dns_server.config import Config
from dns_server.resolver import RR, Answer, resolve
from dns_server.snapshot import Snapshot
from tests.cluster_data import example_records, registry_with

Z = "cluster.local"
CONFIG = Config(listen=(("127.0.0.1", 5353),), fixtures=None)
SNAPSHOT = registry_with(example_records()).snapshot


def show(rrs: tuple[RR, ...]) -> set[str]:
    def data(rr: RR) -> str:
        return " ".join(map(str, rr.data)) if isinstance(rr.data, tuple) else str(rr.data)
    return {f"{rr.name} {QTYPE.get(rr.rtype)} {data(rr)}" for rr in rrs}


def ask(name: str, qtype: str, snapshot: Snapshot = SNAPSHOT, config: Config = CONFIG) -> Answer:
    return resolve(name, getattr(QTYPE, qtype), 1, snapshot, config)


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
    # ExternalName: CNAME alone for a CNAME query or an outside target; in-zone targets chased
    (f"payments-api.shop.svc.{Z}", "CNAME", {f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"}),
    (f"storefront.shop.svc.{Z}", "A", {f"storefront.shop.svc.{Z} CNAME frontend.shop.svc.{Z}",
                                        f"frontend.shop.svc.{Z} A 10.96.10.20"}),
    # reverse
    ("1.0.96.10.in-addr.arpa", "PTR", {f"1.0.96.10.in-addr.arpa PTR kubernetes.default.svc.{Z}"}),
    ("10.1.244.10.in-addr.arpa", "PTR", {f"10.1.244.10.in-addr.arpa PTR postgres-0.postgres.data.svc.{Z}"}),
    ("0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa", "PTR",
     {f"0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa PTR checkout.shop.svc.{Z}"}),
    # pods (insecure)
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
    assert (answer.rcode, show(answer.answer)) == (RCODE.NOERROR, expected)
    assert answer.authoritative


NEGATIVE = [
    # NXDOMAIN: names that do not exist
    (f"nope.shop.svc.{Z}", "A", RCODE.NXDOMAIN),
    (f"frontend.nope.svc.{Z}", "A", RCODE.NXDOMAIN),
    (f"nope.svc.{Z}", "A", RCODE.NXDOMAIN),
    (f"postgres-2.postgres.data.svc.{Z}", "A", RCODE.NXDOMAIN),  # not ready
    (f"_nope._tcp.frontend.shop.svc.{Z}", "SRV", RCODE.NXDOMAIN),
    (f"_http._udp.frontend.shop.svc.{Z}", "SRV", RCODE.NXDOMAIN),
    (f"a.b.c.frontend.shop.svc.{Z}", "A", RCODE.NXDOMAIN),
    (f"frontend.shop.svc.{Z}.shop.svc.{Z}", "A", RCODE.NXDOMAIN),  # a search-path miss
    (f"api.github.com.{Z}", "A", RCODE.NXDOMAIN),
    (f"foo.bar.{Z}", "A", RCODE.NXDOMAIN),
    (f"not-an-ip.shop.pod.{Z}", "A", RCODE.NXDOMAIN),
    (f"10-244-9-9.nope.pod.{Z}", "A", RCODE.NXDOMAIN),
    # NODATA: the name exists, the type does not
    (f"frontend.shop.svc.{Z}", "AAAA", RCODE.NOERROR),
    (f"frontend.shop.svc.{Z}", "TXT", RCODE.NOERROR),
    (f"postgres.data.svc.{Z}", "AAAA", RCODE.NOERROR),
    (f"_http._tcp.frontend.shop.svc.{Z}", "A", RCODE.NOERROR),
    (f"payments-api.shop.svc.{Z}", "SRV", RCODE.NOERROR),
    (Z, "A", RCODE.NOERROR),
    (f"svc.{Z}", "A", RCODE.NOERROR),
    (f"pod.{Z}", "A", RCODE.NOERROR),
    (f"shop.svc.{Z}", "A", RCODE.NOERROR),
    (f"shop.pod.{Z}", "A", RCODE.NOERROR),
    (f"dns-version.{Z}", "A", RCODE.NOERROR),
    (f"10-244-9-9.shop.pod.{Z}", "AAAA", RCODE.NOERROR),
    ("1.0.96.10.in-addr.arpa", "A", RCODE.NOERROR),
]


@pytest.mark.parametrize("name, qtype, rcode", NEGATIVE)
def test_negative_answers_carry_the_zone_soa(name: str, qtype: str, rcode: int) -> None:
    answer = ask(name, qtype)
    assert answer.rcode == rcode
    assert answer.answer == ()
    assert [rr.rtype for rr in answer.authority] == [QTYPE.SOA]
    assert answer.authoritative


def test_soa_fields() -> None:
    (soa,) = ask(Z, "SOA").answer
    mname, rname, serial, refresh, retry, expire, minimum = soa.data  # type: ignore[misc]
    assert (mname, rname, refresh, retry, expire, minimum) == (f"ns.dns.{Z}", f"hostmaster.{Z}", 7200, 1800, 86400, 5)
    assert serial == SNAPSHOT.serial and soa.ttl == 5


def test_srv_additional_section_has_target_addresses() -> None:
    answer = ask(f"_postgres._tcp.postgres.data.svc.{Z}", "SRV")
    assert show(answer.additional) == {f"postgres-0.postgres.data.svc.{Z} A 10.244.1.10",
                                       f"postgres-1.postgres.data.svc.{Z} A 10.244.2.11"}
    dual = ask(f"_http._tcp.checkout.shop.svc.{Z}", "SRV")
    assert show(dual.additional) == {f"checkout.shop.svc.{Z} A 10.96.10.30",
                                     f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"}


def test_outside_names_and_unknown_reverse_are_forwarded() -> None:
    assert ask("example.com", "A").forward
    assert ask("9.9.9.9.in-addr.arpa", "PTR").forward
    no_fallthrough = Config(listen=(("127.0.0.1", 5353),), reverse_fallthrough=False)
    assert ask("9.9.9.9.in-addr.arpa", "PTR", config=no_fallthrough).rcode == RCODE.NXDOMAIN


def test_external_name_outside_the_zone_is_chased_upstream() -> None:
    answer = ask(f"payments-api.shop.svc.{Z}", "A")
    assert show(answer.answer) == {f"payments-api.shop.svc.{Z} CNAME api.payments.example.com"}
    assert answer.chase == "api.payments.example.com"


def test_refused_cases() -> None:
    assert resolve(f"frontend.shop.svc.{Z}", QTYPE.A, 3, SNAPSHOT, CONFIG).rcode == RCODE.REFUSED  # CHAOS
    assert ask(Z, "AXFR").rcode == RCODE.REFUSED
    assert ask(Z, "IXFR").rcode == RCODE.REFUSED


def test_not_synced_turns_nxdomain_into_servfail_only() -> None:
    from dataclasses import replace
    unsynced = replace(SNAPSHOT, synced=False)
    assert ask(f"nope.shop.svc.{Z}", "A", unsynced).rcode == RCODE.SERVFAIL
    assert ask(f"frontend.shop.svc.{Z}", "A", unsynced).rcode == RCODE.NOERROR
    assert ask("example.com", "A", unsynced).forward


@pytest.mark.parametrize("mode, name, rcode", [
    ("disabled", f"10-244-1-5.shop.pod.{Z}", RCODE.NXDOMAIN),
    ("verified", f"10-244-1-5.shop.pod.{Z}", RCODE.NOERROR),  # a running pod has it
    ("verified", f"10-244-1-99.shop.pod.{Z}", RCODE.NXDOMAIN),  # the pod Succeeded
    ("verified", f"10-244-1-5.data.pod.{Z}", RCODE.NXDOMAIN),  # wrong namespace
    ("verified", f"10-244-3-12.data.pod.{Z}", RCODE.NOERROR),  # Pending but has an IP
    ("insecure", f"10-244-1-99.shop.pod.{Z}", RCODE.NOERROR),
])
def test_pod_modes(mode: str, name: str, rcode: int) -> None:
    config = Config(listen=(("127.0.0.1", 5353),), pods=mode)
    answer = ask(name, "A", config=config)
    assert answer.rcode == rcode
    assert bool(answer.answer) == (rcode == RCODE.NOERROR)


def test_endpoint_pod_names() -> None:
    snapshot = registry_with(example_records(), endpoint_pod_names=True).snapshot
    answer = ask(f"redis-7f9c6-2mxkq.redis.data.svc.{Z}", "A", snapshot)
    assert show(answer.answer) == {f"redis-7f9c6-2mxkq.redis.data.svc.{Z} A 10.244.1.20"}
    assert ask(f"postgres-0.postgres.data.svc.{Z}", "A", snapshot).rcode == RCODE.NOERROR  # hostname wins


def test_any_returns_every_record_of_the_name() -> None:
    answer = ask(f"checkout.shop.svc.{Z}", "ANY")
    assert {f"checkout.shop.svc.{Z} A 10.96.10.30", f"checkout.shop.svc.{Z} AAAA fd00:10:96::a30"} <= show(answer.answer)


def test_ttl_is_configurable() -> None:
    config = Config(listen=(("127.0.0.1", 5353),), ttl=30)
    (record,) = ask(f"frontend.shop.svc.{Z}", "A", config=config).answer
    assert record.ttl == 30
    assert ask(f"dns-version.{Z}", "TXT", config=config).answer[0].ttl == 28800


def test_other_cluster_domain() -> None:
    config = Config(listen=(("127.0.0.1", 5353),), cluster_domain="k8s.example")
    assert show(ask("frontend.shop.svc.k8s.example", "A", config=config).answer) == {
        "frontend.shop.svc.k8s.example A 10.96.10.20"}
    assert ask(f"frontend.shop.svc.{Z}", "A", config=config).forward
