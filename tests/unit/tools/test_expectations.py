"""The checks `dns-server check` derives from a cluster's objects: the specification's records, one table per kind."""

from __future__ import annotations

from dns_server.cluster.records import Endpoint, EndpointSlice, Namespace, Pod, Port, Service
from dns_server.tools.expectations import NOERROR, NXDOMAIN, Check, expected_checks

ZONE = "cluster.local"
HTTP = Port("http", "TCP", 80)
UNNAMED = Port("", "TCP", 8080)


def checks_of(*records: object, pods: str = "disabled") -> dict[tuple[str, str], Check]:
    found = expected_checks(records, ZONE, pods)  # type: ignore[arg-type]
    return {(check.name, check.qtype): check for check in found}


def test_a_cluster_ip_service_has_its_address_srv_per_named_port_and_ptr() -> None:
    checks = checks_of(Service("shop", "web", ("10.96.0.5",), False, "", (HTTP, UNNAMED, Port("dns", "UDP", 53))))
    assert checks[("web.shop.svc.cluster.local.", "A")] == Check(
        "service", "2.3.1", "web.shop.svc.cluster.local.", "A", NOERROR, ("10.96.0.5",))
    assert checks[("web.shop.svc.cluster.local.", "AAAA")] == Check(
        "nodata", "2.3.1", "web.shop.svc.cluster.local.", "AAAA", NOERROR)
    assert checks[("_http._tcp.web.shop.svc.cluster.local.", "SRV")].answers == ("80 web.shop.svc.cluster.local.",)
    assert checks[("_dns._udp.web.shop.svc.cluster.local.", "SRV")].answers == ("53 web.shop.svc.cluster.local.",)
    assert not any(name.startswith("_.") or "8080" in " ".join(c.answers) for (name, _), c in checks.items())
    assert checks[("5.0.96.10.in-addr.arpa.", "PTR")] == Check(
        "service-ptr", "2.3.3", "5.0.96.10.in-addr.arpa.", "PTR", NOERROR, ("web.shop.svc.cluster.local.",))


def test_a_dual_stack_service_has_a_and_aaaa_and_an_ip6_arpa_ptr_of_the_full_address() -> None:
    checks = checks_of(Service("shop", "web", ("10.96.0.5", "fd00::5"), False, "", ()))
    assert checks[("web.shop.svc.cluster.local.", "AAAA")].answers == ("fd00::5",)
    assert checks[("web.shop.svc.cluster.local.", "A")].answers == ("10.96.0.5",)
    reverse = "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
    assert checks[(reverse, "PTR")].answers == ("web.shop.svc.cluster.local.",)


def test_a_headless_service_answers_its_ready_endpoints_by_service_hostname_and_srv() -> None:
    service = Service("data", "db", (), True, "", (Port("pg", "TCP", 5432),))
    piece = EndpointSlice("data", "db-abc", "db", (
        Endpoint(("10.244.0.1",), True, "db-0", "db-0"),
        Endpoint(("10.244.0.2",), True, "", "db-x"),
        Endpoint(("10.244.0.3",), True, "", "db-y"),
        Endpoint(("10.244.0.4",), False, "db-3", "db-3"),  # not ready: in no record
    ), (Port("pg", "TCP", 5433),))
    checks = checks_of(service, piece)
    owner = "db.data.svc.cluster.local."
    assert checks[(owner, "A")] == Check("headless", "2.4.1", owner, "A", NOERROR,
                                         ("10.244.0.1", "10.244.0.2", "10.244.0.3"))
    assert checks[(owner, "AAAA")].rcode == NOERROR and checks[(owner, "AAAA")].answers == ()
    assert checks[("db-0." + owner, "A")] == Check("endpoint", "2.4.1", "db-0." + owner, "A", NOERROR, ("10.244.0.1",))
    assert ("db-3." + owner, "A") not in checks
    # the endpoint's port, one record per ready endpoint; those without a hostname have a name of the server's choice
    assert checks[("_pg._tcp." + owner, "SRV")].answers == (
        "5433 db-0.db.data.svc.cluster.local.", "5433 *.db.data.svc.cluster.local.", "5433 *.db.data.svc.cluster.local.")
    assert checks[("1.0.244.10.in-addr.arpa.", "PTR")] == Check(
        "endpoint-ptr", "2.4.3", "1.0.244.10.in-addr.arpa.", "PTR", NOERROR, ("db-0." + owner,))
    assert checks[("2.0.244.10.in-addr.arpa.", "PTR")].answers == ("*." + owner,)
    assert ("4.0.244.10.in-addr.arpa.", "PTR") not in checks


def test_a_headless_service_without_ready_endpoints_is_nxdomain() -> None:
    checks = checks_of(Service("data", "db", (), True, "", ()),
                       EndpointSlice("data", "db-abc", "db", (Endpoint(("10.244.0.4",), False, "", ""),), ()))
    for qtype in ("A", "AAAA"):
        assert checks[("db.data.svc.cluster.local.", qtype)] == Check(
            "headless", "2.4.1", "db.data.svc.cluster.local.", qtype, NXDOMAIN)


def test_an_external_name_service_is_a_cname_asked_as_cname() -> None:
    checks = checks_of(Service("shop", "pay", (), False, "api.example.com", ()))
    assert checks[("pay.shop.svc.cluster.local.", "CNAME")] == Check(
        "external-name", "2.5", "pay.shop.svc.cluster.local.", "CNAME", NOERROR, ("api.example.com.",))
    assert ("pay.shop.svc.cluster.local.", "A") not in checks


def test_dns_version_missing_services_and_search_path_misses() -> None:
    checks = checks_of(Namespace("empty"), Service("shop", "absent-service", ("10.96.0.9",), False, "", ()))
    assert checks[("dns-version.cluster.local.", "TXT")].answers == ('"1.1.0"',)
    assert checks[("absent-service-x.shop.svc.cluster.local.", "A")].rcode == NXDOMAIN  # not the service of that name
    assert checks[("absent-service.empty.svc.cluster.local.", "A")].rcode == NXDOMAIN
    for suffix in ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local"):
        check = checks[(f"absent-service.shop.svc.cluster.local.{suffix}.", "A")]
        assert (check.kind, check.rcode) == ("search-path", NXDOMAIN)


def test_pod_names_follow_the_pods_mode() -> None:
    pods = (Pod("shop", "web-1", ("10.244.1.5", "fd00::1:5"), True), Pod("shop", "done", ("10.244.1.6",), False))
    assert not [c for c in checks_of(*pods).values() if c.kind == "pod"]
    verified = {name: c for (name, _), c in checks_of(*pods, pods="verified").items() if c.kind == "pod"}
    assert verified == {
        "10-244-1-5.shop.pod.cluster.local.": Check("pod", "2.6", "10-244-1-5.shop.pod.cluster.local.", "A", NOERROR,
                                                    ("10.244.1.5",)),
        "192-0-2-1.shop.pod.cluster.local.": Check("pod", "2.6", "192-0-2-1.shop.pod.cluster.local.", "A", NXDOMAIN)}
    insecure = {name: c for (name, _), c in checks_of(*pods, pods="insecure").items() if c.kind == "pod"}
    assert insecure["10-244-1-6.shop.pod.cluster.local."].answers == ("10.244.1.6",)
    assert insecure["192-0-2-1.shop.pod.cluster.local."].answers == ("192.0.2.1",)
