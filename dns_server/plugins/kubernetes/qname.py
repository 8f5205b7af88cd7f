"""Parse a query name once into a typed value; nothing downstream splits labels again.

Name shapes under the cluster zone Z (read right to left, as CoreDNS's kubernetes plugin does):

    Z                                   APEX
    dns-version.Z                       DNS_VERSION
    ns.dns.Z                            NS_DNS       (the DNS service's own address)
    dns.Z                               EMPTY        (an empty non-terminal above ns.dns.Z)
    svc.Z, pod.Z                        EMPTY
    <ns>.svc.Z                          NAMESPACE
    <svc>.<ns>.svc.Z                    SERVICE
    <endpoint>.<svc>.<ns>.svc.Z         ENDPOINT
    _<port>._<proto>.<svc>.<ns>.svc.Z   PORT         (SRV)
    <ns>.pod.Z                          POD_NAMESPACE
    <a-b-c-d>.<ns>.pod.Z                POD
    anything else under Z               INVALID      (NXDOMAIN)

In a `multicluster` zone (clusterset.local) the services are ServiceImports, whose endpoints are
named under their cluster:

    <endpoint>.<cluster>.<svc>.<ns>.svc.Z   CLUSTER_ENDPOINT
    <endpoint>.<svc>.<ns>.svc.Z             INVALID      (an endpoint is always named with its cluster)

In a reverse zone (one under `in-addr.arpa` or the nibble-form `ip6.arpa`), the zone's own name is
APEX and every other name REVERSE, with the address it spells or an empty address when it is not
one whole address.  The caller picks the zone (the longest of the plugin's zones the name lies in).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from typing import Callable, NamedTuple

from dns_server.protocol.names import in_zone

IPV4_REVERSE = "in-addr.arpa"
IPV6_REVERSE = "ip6.arpa"


class Kind(enum.Enum):
    APEX = "apex"
    DNS_VERSION = "dns-version"
    NS_DNS = "ns.dns"
    EMPTY = "empty non-terminal"
    NAMESPACE = "namespace"
    SERVICE = "service"
    ENDPOINT = "endpoint"
    CLUSTER_ENDPOINT = "endpoint in a cluster"
    PORT = "port"
    POD_NAMESPACE = "pod namespace"
    POD = "pod"
    INVALID = "invalid"
    REVERSE = "reverse"


class Name(NamedTuple):
    kind: Kind
    zone: str = ""  # the zone the name lies in: a cluster domain or a reverse zone
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""  # without its underscore
    protocol: str = ""  # without its underscore, lower case
    address: str = ""  # POD and REVERSE: normalised address ("" if none parsed)
    cluster: str = ""  # CLUSTER_ENDPOINT: the cluster id
    clusterset: bool = False  # the zone is a `multicluster` zone: services are ServiceImports


def parse_qname(name: str, zone: str, clusterset: bool = False) -> Name:
    """Classify a lower-case dotted name (no trailing dot) that lies in `zone` (root: "")."""
    if name == zone:
        return Name(Kind.APEX, zone)
    reverse = _reverse_reader(zone)
    if reverse is not None:
        return Name(Kind.REVERSE, zone, address=reverse(name))
    relative = name[: -len(zone) - 1] if zone else name
    parsed = _parse_cluster(relative.split("."), zone, clusterset)
    return parsed._replace(clusterset=True) if clusterset else parsed


def _parse_cluster(labels: list[str], zone: str, clusterset: bool) -> Name:
    labels.reverse()
    top = labels[0]
    if len(labels) == 1:
        if top == "dns-version":
            return Name(Kind.DNS_VERSION, zone)
        if top in ("svc", "pod", "dns"):
            return Name(Kind.EMPTY, zone)
        return Name(Kind.INVALID, zone)
    if top == "dns":
        return Name(Kind.NS_DNS if labels[1:] == ["ns"] else Kind.INVALID, zone)
    namespace = labels[1]
    if top == "pod":
        if len(labels) == 2:
            return Name(Kind.POD_NAMESPACE, zone, namespace)
        if len(labels) == 3:
            return Name(Kind.POD, zone, namespace, address=pod_address(labels[2]))
        return Name(Kind.INVALID, zone)
    if top != "svc":
        return Name(Kind.INVALID, zone)
    if len(labels) == 2:
        return Name(Kind.NAMESPACE, zone, namespace)
    service = labels[2]
    if len(labels) == 3:
        return Name(Kind.SERVICE, zone, namespace, service)
    if len(labels) == 4:
        return Name(Kind.INVALID if clusterset else Kind.ENDPOINT, zone, namespace, service, endpoint=labels[3])
    if len(labels) == 5 and labels[3].startswith("_") and labels[4].startswith("_"):
        return Name(Kind.PORT, zone, namespace, service, port=labels[4][1:], protocol=labels[3][1:])
    if len(labels) == 5 and clusterset and not labels[3].startswith("_") and not labels[4].startswith("_"):
        return Name(Kind.CLUSTER_ENDPOINT, zone, namespace, service, endpoint=labels[4], cluster=labels[3])
    return Name(Kind.INVALID, zone)


def pod_address(label: str) -> str:
    """The address a pod label spells (`10-244-1-7`, `fd00--1`), or "" if it spells none.

    Exactly three dashes and no `--` is IPv4; otherwise dashes stand for colons (IPv6).
    """
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


@functools.cache
def _reverse_reader(zone: str) -> Callable[[str], str] | None:
    """What reads the address a name in `zone` spells, if it is a reverse zone (a zone is one of a
    few: asked once each, not for every name)."""
    if in_zone(zone, IPV4_REVERSE):
        return _reverse_v4
    if in_zone(zone, IPV6_REVERSE):
        return _reverse_v6
    return None


def _reverse_v4(name: str) -> str:
    labels = name[: -len(IPV4_REVERSE)].rstrip(".").split(".")
    if len(labels) != 4 or not all(label.isdigit() and len(label) <= 3 for label in labels):
        return ""
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels))))
    except ValueError:
        return ""


def _reverse_v6(name: str) -> str:
    nibbles = name[: -len(IPV6_REVERSE)].rstrip(".").split(".")
    if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
        return ""
    return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))


def reverse_name(address: str) -> str:
    """The PTR owner name of an address, without the trailing dot."""
    return ipaddress.ip_address(address).reverse_pointer
