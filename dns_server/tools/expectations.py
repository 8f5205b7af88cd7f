"""What a cluster DNS server must answer for a cluster's objects, read from the specification alone.

The specification is "Kubernetes DNS-Based Service Discovery", schema 1.1.0
(https://github.com/kubernetes/dns/blob/master/docs/specification.md); the section numbers here are
its own.  The negative answers it implies (a name that does not exist, a type a name does not have)
cite RFC 2308, which defines them.

This reading is deliberately independent of the server's kubernetes plugin: `check` judges any
cluster DNS, ours included, and must not share the code it judges.  It takes the slim records of
`cluster/records.py` (the converters only copy fields out of the API objects) and derives every
question the specification answers, with the rcode and the answer records it requires:

- A/AAAA of each ClusterIP service: its cluster IPs (2.3.1); the family it has no IP of: no records.
- SRV of each named port of a ClusterIP service: the port and the service's name (2.3.2).
- PTR of each cluster IP (2.3.3) and of each ready endpoint address of a headless service (2.4.3).
- A/AAAA of a headless service: its ready endpoints' addresses, NXDOMAIN with none (2.4.1); of
  `<hostname>.<service>`: that endpoint's addresses (2.4.1).
- SRV of each named port of a headless service: one per ready endpoint, targeting its hostname
  (2.4.2); the ports are its EndpointSlices' (the numbers the pods listen on).
- CNAME of an ExternalName service (2.5), asked as CNAME so no upstream answer mixes in.
- `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` (2.6), when the server is said to serve pods.
- TXT `dns-version.<zone>`: "1.1.0" (2.2).
- NXDOMAIN for a service that does not exist and for the names a pod's search path makes of a
  service name (RFC 2308 2.1).

An endpoint without a `hostname` has "a unique, system-assigned identifier" whose format the
specification leaves open (2.1): its SRV target and PTR name are expected as `*.<service>...`,
where `*` is one label of the server's choosing.  SRV priority and weight are not prescribed
(2.3.2): an SRV record is compared as `<port> <target>`.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from dns_server.cluster.records import EndpointSlice, Namespace, Pod, Record, Service

SCHEMA_VERSION = "1.1.0"  # the specification's schema this checker reads
ANY_LABEL = "*"  # in an expected record: one label the specification leaves to the server
NXDOMAIN, NOERROR = "NXDOMAIN", "NOERROR"
POD_MODES = ("disabled", "insecure", "verified")  # the kubernetes plugin's `pods` modes
UNUSED_POD_ADDRESS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): no pod of a real cluster has it


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of check: what is asked, and where the expected answer comes from."""

    name: str
    section: str
    title: str


KINDS = (
    Kind("dns-version", "2.2", "TXT dns-version.<zone> holds the schema version"),
    Kind("service", "2.3.1", "A/AAAA of a ClusterIP service: its cluster IPs"),
    Kind("service-srv", "2.3.2", "SRV of each named port of a ClusterIP service"),
    Kind("service-ptr", "2.3.3", "PTR of each cluster IP"),
    Kind("headless", "2.4.1", "A/AAAA of a headless service: its ready endpoints, NXDOMAIN with none"),
    Kind("endpoint", "2.4.1", "A/AAAA of <hostname>.<service>: that ready endpoint's addresses"),
    Kind("headless-srv", "2.4.2", "SRV of each named port of a headless service: one per ready endpoint"),
    Kind("endpoint-ptr", "2.4.3", "PTR of each ready endpoint address of a headless service"),
    Kind("external-name", "2.5", "CNAME of an ExternalName service"),
    Kind("pod", "2.6", "A of <a>-<b>-<c>-<d>.<ns>.pod.<zone> (with --pods insecure or verified)"),
    Kind("nodata", "2.3.1, 2.4.1", "the address family a name has no address of: NOERROR and no records"),
    Kind("nxdomain", "RFC 2308 2.1", "a service that does not exist: NXDOMAIN"),
    Kind("search-path", "RFC 2308 2.1", "a search-path miss such as <svc>.<ns>.svc.<zone>.<ns>.svc.<zone>: NXDOMAIN"),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)


@dataclass(frozen=True, slots=True)
class Check:
    """One question and the answer the specification requires for it."""

    kind: str
    section: str
    name: str  # absolute, lower case
    qtype: str
    rcode: str
    answers: tuple[str, ...] = ()  # the answer records' data, as compare.read_reply writes it; may hold ANY_LABEL

    @property
    def title(self) -> str:
        return f"{self.name} {self.qtype}"


def expected_checks(records: Iterable[Record], zone: str, pods: str = "disabled") -> list[Check]:
    """Every check the specification defines for these objects, served in `zone` (e.g. cluster.local)."""
    zone = zone.strip(".").lower()
    services: list[Service] = []
    slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    pod_records: list[Pod] = []
    namespaces: set[str] = set()
    for record in records:
        if isinstance(record, Service):
            services.append(record)
            namespaces.add(record.namespace)
        elif isinstance(record, EndpointSlice) and record.service:
            slices[(record.namespace, record.service)].append(record)
        elif isinstance(record, Pod):
            pod_records.append(record)
        elif isinstance(record, Namespace):
            namespaces.add(record.name)
    services.sort(key=lambda s: (s.namespace, s.name))
    checks = [Check("dns-version", "2.2", f"dns-version.{zone}.", "TXT", NOERROR, (f'"{SCHEMA_VERSION}"',))]
    pointers: dict[str, set[str]] = defaultdict(set)
    pointer_kinds: dict[str, tuple[str, str]] = {}  # address -> (kind, section) of its first owner
    for service in services:
        owner = f"{service.name}.{service.namespace}.svc.{zone}."
        if service.external_name:
            checks.append(Check("external-name", "2.5", owner, "CNAME", NOERROR, (service.external_name + ".",)))
            continue
        if not service.headless:
            checks += _cluster_ip_checks(service, owner)
            for address in service.cluster_ips:
                pointers[address].add(owner)
                pointer_kinds.setdefault(address, ("service-ptr", "2.3.3"))
            continue
        checks += _headless_checks(owner, slices.get((service.namespace, service.name), []))
        for address, target in _ready_targets(owner, slices.get((service.namespace, service.name), [])):
            pointers[address].add(target)
            pointer_kinds.setdefault(address, ("endpoint-ptr", "2.4.3"))
    for address in sorted(pointers, key=lambda text: ipaddress.ip_address(text).packed.rjust(16)):
        kind, section = pointer_kinds[address]
        checks.append(Check(kind, section, reverse_name(address), "PTR", NOERROR, tuple(sorted(pointers[address]))))
    checks += _pod_checks(pod_records, zone, pods)
    checks += _missing_names(services, sorted(namespaces), zone)
    return checks


def _cluster_ip_checks(service: Service, owner: str) -> list[Check]:
    checks = _address_checks("service", "2.3.1", owner, service.cluster_ips)
    srv: dict[str, set[str]] = defaultdict(set)
    for port in service.ports:
        if port.name:
            srv[f"_{port.name}._{port.protocol.lower()}.{owner}"].add(f"{port.port} {owner}")
    return checks + [Check("service-srv", "2.3.2", name, "SRV", NOERROR, tuple(sorted(data)))
                     for name, data in sorted(srv.items())]


def _headless_checks(owner: str, slices: list[EndpointSlice]) -> list[Check]:
    ready = [(piece, endpoint) for piece in slices for endpoint in piece.endpoints if endpoint.ready]
    addresses = [address for _, endpoint in ready for address in endpoint.addresses]
    if not addresses:
        return [Check("headless", "2.4.1", owner, qtype, NXDOMAIN) for qtype in ("A", "AAAA")]
    checks = _address_checks("headless", "2.4.1", owner, addresses)
    by_hostname: dict[str, list[str]] = defaultdict(list)
    for _, endpoint in ready:
        if endpoint.hostname:
            by_hostname[endpoint.hostname] += endpoint.addresses
    for hostname, named in sorted(by_hostname.items()):
        checks += _address_checks("endpoint", "2.4.1", f"{hostname}.{owner}", named)
    srv: dict[str, set[str]] = defaultdict(set)
    unnamed: dict[str, list[str]] = defaultdict(list)  # one record per endpoint: a set would merge them
    for piece, endpoint in ready:
        for port in piece.ports:
            if not port.name:
                continue
            name = f"_{port.name}._{port.protocol.lower()}.{owner}"
            if endpoint.hostname:
                srv[name].add(f"{port.port} {endpoint.hostname}.{owner}")
            else:
                unnamed[name].append(f"{port.port} {ANY_LABEL}.{owner}")
    return checks + [Check("headless-srv", "2.4.2", name, "SRV", NOERROR, tuple(sorted(srv[name])) + tuple(unnamed[name]))
                     for name in sorted(srv.keys() | unnamed.keys())]


def _ready_targets(owner: str, slices: list[EndpointSlice]) -> Iterable[tuple[str, str]]:
    """(address, the name its PTR points to) for each ready endpoint address (2.4.3)."""
    for piece in slices:
        for endpoint in piece.endpoints:
            if endpoint.ready:
                for address in endpoint.addresses:
                    yield address, f"{endpoint.hostname or ANY_LABEL}.{owner}"


def _address_checks(kind: str, section: str, owner: str, addresses: Iterable[str]) -> list[Check]:
    """A and AAAA of a name: its addresses of each family, NOERROR without records for a family it has none of."""
    families: dict[str, set[str]] = {"A": set(), "AAAA": set()}
    for address in addresses:
        families["A" if ipaddress.ip_address(address).version == 4 else "AAAA"].add(address)
    return [Check(kind, section, owner, qtype, NOERROR, tuple(sorted(found))) if found
            else Check("nodata", section, owner, qtype, NOERROR)
            for qtype, found in families.items()]


def _pod_checks(pods: list[Pod], zone: str, mode: str) -> list[Check]:
    """2.6: `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` for pods' IPv4 addresses.

    `insecure` answers any address in any namespace; `verified` only those of a running pod in that
    namespace, so an address no pod has is NXDOMAIN.
    """
    if mode == "disabled":
        return []
    checks = []
    answered = [pod for pod in pods if pod.running or mode == "insecure"]
    for pod in sorted(answered, key=lambda p: (p.namespace, p.name)):
        for address in pod.ips:
            if ipaddress.ip_address(address).version == 4:
                name = f"{address.replace('.', '-')}.{pod.namespace}.pod.{zone}."
                checks.append(Check("pod", "2.6", name, "A", NOERROR, (address,)))
    namespace = min((pod.namespace for pod in pods), default="default")
    unused = f"{UNUSED_POD_ADDRESS.replace('.', '-')}.{namespace}.pod.{zone}."
    checks.append(Check("pod", "2.6", unused, "A", NOERROR, (UNUSED_POD_ADDRESS,)) if mode == "insecure"
                  else Check("pod", "2.6", unused, "A", NXDOMAIN))
    return checks


def _missing_names(services: list[Service], namespaces: list[str], zone: str) -> list[Check]:
    """Per namespace: a service that does not exist, and what a pod's search path makes of one that does."""
    names = {(service.namespace, service.name) for service in services}
    checks = []
    for namespace in namespaces:
        absent = "absent-service"
        while (namespace, absent) in names:
            absent += "-x"
        checks.append(Check("nxdomain", "RFC 2308 2.1", f"{absent}.{namespace}.svc.{zone}.", "A", NXDOMAIN))
        first = next((service for service in services if service.namespace == namespace), None)
        if first is None:
            continue
        asked = f"{first.name}.{namespace}.svc.{zone}"
        # resolv.conf's search list in a pod of that namespace: <ns>.svc.<zone> svc.<zone> <zone>
        for suffix in (f"{namespace}.svc.{zone}", f"svc.{zone}", zone):
            checks.append(Check("search-path", "RFC 2308 2.1", f"{asked}.{suffix}.", "A", NXDOMAIN))
    return checks


def reverse_name(address: str) -> str:
    """The PTR owner of an address: in-addr.arpa (2.3.3), or ip6.arpa nibbles of the full IPv6 form."""
    return ipaddress.ip_address(address).reverse_pointer + "."
