"""parse_qname: every name shape under a cluster zone, reverse names, and a round trip of random names.

The table follows the shapes in qname.py's docstring (CoreDNS's kubernetes plugin reads a name the
same way, right to left); the property test builds names from random valid labels in each shape
and checks they parse back to their parts.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dns_server.plugins.kubernetes.qname import (
    Kind,
    Name,
    parse_qname,
    pod_address,
    reverse_name,
)

Z = "cluster.local"

CLUSTER_NAMES = [
    ("apex", Z, Name(Kind.APEX, Z)),
    ("dns-version", f"dns-version.{Z}", Name(Kind.DNS_VERSION, Z)),
    ("ns.dns", f"ns.dns.{Z}", Name(Kind.NS_DNS, Z)),
    ("dns: empty non-terminal", f"dns.{Z}", Name(Kind.EMPTY, Z)),
    ("svc: empty non-terminal", f"svc.{Z}", Name(Kind.EMPTY, Z)),
    ("pod: empty non-terminal", f"pod.{Z}", Name(Kind.EMPTY, Z)),
    ("namespace", f"shop.svc.{Z}", Name(Kind.NAMESPACE, Z, "shop")),
    ("service", f"web.shop.svc.{Z}", Name(Kind.SERVICE, Z, "shop", "web")),
    ("endpoint", f"web-0.web.shop.svc.{Z}", Name(Kind.ENDPOINT, Z, "shop", "web", endpoint="web-0")),
    ("port", f"_https._tcp.web.shop.svc.{Z}", Name(Kind.PORT, Z, "shop", "web", port="https", protocol="tcp")),
    ("port, udp", f"_dns._udp.kube-dns.kube-system.svc.{Z}",
     Name(Kind.PORT, Z, "kube-system", "kube-dns", port="dns", protocol="udp")),
    ("pod namespace", f"shop.pod.{Z}", Name(Kind.POD_NAMESPACE, Z, "shop")),
    ("pod, IPv4", f"10-244-1-5.shop.pod.{Z}", Name(Kind.POD, Z, "shop", address="10.244.1.5")),
    ("pod, IPv6", f"fd00-10-244--5.shop.pod.{Z}", Name(Kind.POD, Z, "shop", address="fd00:10:244::5")),
    ("pod, not an address", f"web-0.shop.pod.{Z}", Name(Kind.POD, Z, "shop", address="")),
    # everything else under the zone does not exist
    ("unknown top label", f"nope.{Z}", Name(Kind.INVALID, Z)),
    ("unknown second level", f"a.nope.{Z}", Name(Kind.INVALID, Z)),
    ("below dns, not ns", f"a.dns.{Z}", Name(Kind.INVALID, Z)),
    ("below ns.dns", f"a.ns.dns.{Z}", Name(Kind.INVALID, Z)),
    ("below dns-version", f"a.dns-version.{Z}", Name(Kind.INVALID, Z)),
    ("below a pod", f"a.10-244-1-5.shop.pod.{Z}", Name(Kind.INVALID, Z)),
    ("port without _proto", f"_https.tcp.web.shop.svc.{Z}", Name(Kind.INVALID, Z)),
    ("proto without _port", f"https._tcp.web.shop.svc.{Z}", Name(Kind.INVALID, Z)),
    ("below a port", f"a._https._tcp.web.shop.svc.{Z}", Name(Kind.INVALID, Z)),
    ("search-path miss", f"api.github.com.shop.svc.{Z}", Name(Kind.INVALID, Z)),
]


@pytest.mark.parametrize("what, name, parsed", CLUSTER_NAMES, ids=[row[0] for row in CLUSTER_NAMES])
def test_cluster_names(what: str, name: str, parsed: Name) -> None:
    assert parse_qname(name, Z) == parsed


def test_another_cluster_domain() -> None:
    assert parse_qname("web.shop.svc.k8s.test", "k8s.test") == Name(Kind.SERVICE, "k8s.test", "shop", "web")


def parse_reverse(name: str) -> Name:
    """A reverse name parsed as the resolver asks for it: in the reverse zone it lies in."""
    return parse_qname(name, "in-addr.arpa" if name.endswith("in-addr.arpa") else "ip6.arpa")


V6 = "fd00::a30"
V6_REVERSE = ipaddress.ip_address(V6).reverse_pointer
REVERSE_NAMES = [
    ("IPv4", "5.1.244.10.in-addr.arpa", "in-addr.arpa", "10.244.1.5"),
    ("IPv4, three labels", "1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, five labels", "9.5.1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, the zone itself", "in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, an octet over 255", "256.1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, a four-digit label", "0005.1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, not a number", "x.1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv4, an empty label", ".1.244.10.in-addr.arpa", "in-addr.arpa", ""),
    ("IPv6", V6_REVERSE, "ip6.arpa", V6),
    ("IPv6, 31 nibbles", V6_REVERSE.split(".", 1)[1], "ip6.arpa", ""),
    ("IPv6, 33 nibbles", "0." + V6_REVERSE, "ip6.arpa", ""),
    ("IPv6, two characters in a label", "00." + V6_REVERSE.split(".", 2)[2], "ip6.arpa", ""),
    ("IPv6, not hexadecimal", "g." + V6_REVERSE.split(".", 1)[1], "ip6.arpa", ""),
    ("IPv6, the zone itself", "ip6.arpa", "ip6.arpa", ""),
]


@pytest.mark.parametrize("what, name, zone, address", REVERSE_NAMES, ids=[row[0] for row in REVERSE_NAMES])
def test_reverse_names(what: str, name: str, zone: str, address: str) -> None:
    kind = Kind.APEX if name == zone else Kind.REVERSE  # the zone's own name is its apex
    assert parse_reverse(name) == Name(kind, zone, address=address)


@pytest.mark.parametrize("label, address", [
    ("10-244-1-5", "10.244.1.5"),
    ("0-0-0-0", "0.0.0.0"),
    ("fd00--1", "fd00::1"),
    ("2001-db8-0-0-0-0-0-1", "2001:db8::1"),  # normalised
    ("fd00-0-0-0-0-0-0-a30", "fd00::a30"),
    ("10-244-1", ""),  # two dashes: read as IPv6, which it is not
    ("10-244-1-256", ""),
    ("10-244-1-5-6", ""),
    ("a-b-c-d", ""),
    ("", ""),
])
def test_pod_address(label: str, address: str) -> None:
    assert pod_address(label) == address


def test_reverse_name() -> None:
    assert reverse_name("10.96.0.10") == "10.0.96.10.in-addr.arpa"
    assert reverse_name("fd00::1") == "1." + "0." * 29 + "d.f.ip6.arpa"


# -- round trip -------------------------------------------------------------------------------------------

LABEL_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789-"
labels = st.text(LABEL_CHARACTERS, min_size=1, max_size=63)
zones = st.lists(labels, min_size=1, max_size=3).map(".".join).filter(lambda zone: not zone.endswith(".arpa"))
ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)


@given(zones, labels, labels)
def test_a_service_name_parses_back_to_its_parts(zone: str, service: str, namespace: str) -> None:
    assert parse_qname(f"{service}.{namespace}.svc.{zone}", zone) == Name(Kind.SERVICE, zone, namespace, service)


@given(zones, labels, labels, labels)
def test_an_endpoint_name_parses_back_to_its_parts(zone: str, endpoint: str, service: str, namespace: str) -> None:
    assert parse_qname(f"{endpoint}.{service}.{namespace}.svc.{zone}", zone) == Name(
        Kind.ENDPOINT, zone, namespace, service, endpoint=endpoint)


@given(zones, labels, labels, labels, labels)
def test_a_port_name_parses_back_to_its_parts(zone: str, port: str, protocol: str, service: str,
                                              namespace: str) -> None:
    assert parse_qname(f"_{port}._{protocol}.{service}.{namespace}.svc.{zone}", zone) == Name(
        Kind.PORT, zone, namespace, service, port=port, protocol=protocol)


@given(zones, labels, st.sampled_from(["svc", "pod"]))
def test_a_namespace_name_parses_back_to_its_namespace(zone: str, namespace: str, under: str) -> None:
    kind = Kind.NAMESPACE if under == "svc" else Kind.POD_NAMESPACE
    assert parse_qname(f"{namespace}.{under}.{zone}", zone) == Name(kind, zone, namespace)


@given(zones, labels, ipv4 | ipv6)
def test_a_pod_name_parses_back_to_its_address(zone: str, namespace: str,
                                               address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    label = str(address).replace(".", "-").replace(":", "-")
    assert parse_qname(f"{label}.{namespace}.pod.{zone}", zone) == Name(Kind.POD, zone, namespace,
                                                                        address=str(address))


@given(ipv4 | ipv6)
def test_a_reverse_name_parses_back_to_its_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    zone = "in-addr.arpa" if address.version == 4 else "ip6.arpa"
    assert parse_reverse(reverse_name(str(address))) == Name(Kind.REVERSE, zone, address=str(address))
