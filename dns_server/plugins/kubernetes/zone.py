"""The kubernetes plugin's answers: one question against one cluster zone, over the snapshot.

Cluster answers follow the Kubernetes DNS-Based Service Discovery specification 1.1.0 and, where it
is silent, CoreDNS's kubernetes plugin (see ../shared/DNS-BEHAVIOUR.md).  In a `multicluster` zone
(clusterset.local) a service is a ServiceImport of the Multi-Cluster Services API, answered as its
DNS specification (KEP-1645) and CoreDNS do (`imported`); the rest of that zone (apex, dns-version,
ns.dns, namespaces, pods) is answered as in a cluster zone, as CoreDNS does.  Negative answers follow
RFC 2308: NXDOMAIN or NODATA, with the zone's SOA in the authority section.  Every snapshot index
the answer is read from is recorded as a dependency (`Reads`), so a change of exactly those
entries is what invalidates it.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Sequence

from dnslib import QTYPE

from dns_server.chain.plugin import Next, Request
from dns_server.cluster.records import Port
from dns_server.cluster.snapshot import ImportEntry, ServiceEntry
from dns_server.plugins.kubernetes.qname import Kind, Name, parse_qname
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode
from dns_server.protocol.answer import RR, Answer, Outcome, SoaData
from dns_server.protocol.names import longest_zone

SCHEMA_VERSION = "1.1.0"  # Kubernetes DNS-Based Service Discovery specification
DNS_VERSION_TTL = 28800  # CoreDNS's TTL for dns-version
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's SOA timers
MAX_SOA_TTL = 300  # CoreDNS caps the SOA record's own TTL
MAX_CNAME_CHAIN = 8
KUBERNETES = "kubernetes"
A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT = (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.NS, QTYPE.PTR,
                                          QTYPE.SOA, QTYPE.SRV, QTYPE.TXT)
ANY_TYPES = (A, AAAA, SRV, TXT, SOA, NS, PTR)
# Why a name the zone covers does not exist, beside the decisions (`Answer.reason`; dns-server explain shows it)
HEADLESS_WITHOUT_ENDPOINTS = "a headless service with no ready endpoints has no records (as CoreDNS)"
EMPTY_SERVICE_IGNORED = "ignore empty_service: the service has no ready endpoints"
NO_SUCH_ENDPOINT = "no ready endpoint of the service has this name"
NO_NAMED_PORT = "the service has no named port of this name and protocol (an unnamed port has no SRV name)"
PODS_DISABLED = "pods disabled: no pod names (the kubernetes plugin's default)"
POD_NOT_RUNNING = "pods verified: no running pod in the namespace has this address"


class Zone:
    """One question against one kubernetes zone; a short-lived helper that keeps the arguments together."""

    def __init__(self, name: str, parsed: Name, request: Request, next: Next, settings: KubernetesSettings,
                 bound: tuple[str, ...], depth: int = 0) -> None:
        self.name = name
        self.parsed = parsed
        self.request = request
        self.reads = request.reads
        self.next = next  # the rest of the chain: where a CNAME target outside the cluster is asked
        self.settings = settings
        self.bound = bound  # the block's `bind` addresses (ns.dns without a cluster DNS service)
        self.ttl = settings.ttl
        self.depth = depth

    # -- outcomes ---------------------------------------------------------------------------------
    def soa(self) -> RR:
        zone = self.parsed.zone
        data: SoaData = (_join("ns.dns", zone), _join("hostmaster", zone), self.reads.snapshot.serial,
                         SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        return RR(zone, SOA, min(self.ttl, MAX_SOA_TTL), data)

    def done(self, outcome: Outcome, answer: tuple[RR, ...] = (), authority: tuple[RR, ...] = (),
             additional: tuple[RR, ...] = ()) -> Answer:
        return self.reads.answer(outcome, answer, authority, additional, plugin=KUBERNETES)

    def nodata(self) -> Answer:
        return self.done(Outcome.NODATA, authority=(self.soa(),))

    def nxdomain(self, reason: str = "") -> Answer:
        if not self.reads.synced():
            return self.done(Outcome.NOT_READY)  # never claim a name is missing before the first full sync
        return self.reads.answer(Outcome.NXDOMAIN, authority=(self.soa(),), plugin=KUBERNETES, reason=reason)

    def records(self, records: list[RR], additional: list[RR] | None = None) -> Answer:
        if not records:
            return self.nodata()
        return self.done(Outcome.ANSWER, tuple(records), additional=tuple(additional or ()))

    def addresses(self, owner: str, addresses: Sequence[str], qtype: int) -> Answer:
        """A or AAAA records of the asked family; NODATA for any other type or family."""
        return self.records(_address_records(owner, addresses, qtype, self.ttl))

    # -- dispatch ---------------------------------------------------------------------------------
    def answer(self, qtype: int) -> Answer:
        kind = self.parsed.kind
        if kind is Kind.REVERSE:
            return self.reverse(qtype)
        if kind is Kind.APEX:
            return self.apex(qtype)
        if kind is Kind.DNS_VERSION:
            return self.records([RR(self.name, TXT, DNS_VERSION_TTL, SCHEMA_VERSION)] if qtype == TXT else [])
        if kind is Kind.NS_DNS:
            return self.addresses(self.name, self.dns_addresses(), qtype)
        if kind is Kind.EMPTY:
            return self.nodata()
        if kind is Kind.NAMESPACE:
            return self.nodata() if self.reads.namespace_exists(self.parsed.namespace) else self.nxdomain()
        if kind is Kind.POD_NAMESPACE:
            if self.settings.pods is PodMode.DISABLED:
                return self.nxdomain(PODS_DISABLED)
            return self.nodata() if self.reads.namespace_exists(self.parsed.namespace) else self.nxdomain()
        if kind is Kind.POD:
            return self.pod(qtype)
        if kind is Kind.INVALID:
            return self.nxdomain()
        if self.parsed.clusterset:
            return self.imported(qtype)
        entry = self.reads.service((self.parsed.namespace, self.parsed.service))
        if entry is None:
            return self.nxdomain()
        if entry.service.external_name:
            return self.external_name(entry, qtype)
        if entry.service.headless and not entry.endpoints:
            return self.nxdomain(HEADLESS_WITHOUT_ENDPOINTS)
        if self.settings.ignore_empty_service and not entry.endpoints:
            return self.nxdomain(EMPTY_SERVICE_IGNORED)
        if kind is Kind.SERVICE:
            return self.service(entry, qtype)
        if kind is Kind.ENDPOINT:
            return self.endpoint(entry, qtype)
        return self.port(entry, qtype)

    def apex(self, qtype: int) -> Answer:
        if qtype == SOA:
            return self.done(Outcome.ANSWER, (self.soa(),))
        if qtype == NS:
            ns_name = _join("ns.dns", self.parsed.zone)
            addresses = self.dns_addresses()
            glue = _address_records(ns_name, addresses, A, self.ttl) + _address_records(ns_name, addresses, AAAA,
                                                                                         self.ttl)
            return self.records([RR(self.name, NS, self.ttl, ns_name)], glue)
        return self.nodata()

    def dns_addresses(self) -> tuple[str, ...]:
        """The cluster DNS service's addresses (CoreDNS answers ns.dns.Z with its own service)."""
        entry = self.reads.service(self.settings.dns_service)
        if entry is not None and entry.service.cluster_ips:
            return entry.service.cluster_ips
        return tuple(host for host in self.bound if not ipaddress.ip_address(host).is_unspecified)

    def service(self, entry: ServiceEntry, qtype: int) -> Answer:
        svc = entry.service
        if qtype == SRV:
            return self.srv(entry, lambda port: True)
        if svc.headless:
            return self.addresses(self.name, [ep.address for ep in entry.endpoints], qtype)
        return self.addresses(self.name, svc.cluster_ips, qtype)

    def endpoint(self, entry: ServiceEntry, qtype: int) -> Answer:
        found = [ep.address for ep in entry.endpoints if ep.name == self.parsed.endpoint]
        if not found:
            return self.nxdomain(NO_SUCH_ENDPOINT)
        return self.addresses(self.name, found, qtype)

    def port(self, entry: ServiceEntry, qtype: int) -> Answer:
        matches = self.named_port()
        ports = ([p for ep in entry.endpoints for p in ep.ports] if entry.service.headless
                 else list(entry.service.ports))
        if not any(matches(p) for p in ports):
            return self.nxdomain(NO_NAMED_PORT)
        if qtype != SRV:
            return self.nodata()
        return self.srv(entry, matches)

    def named_port(self) -> Callable[[Port], bool]:
        """Whether a port is the one `_<port>._<proto>` asks for (a named port)."""
        want_port, want_proto = self.parsed.port, self.parsed.protocol

        def matches(port: Port) -> bool:
            return bool(port.name) and port.name == want_port and port.protocol.lower() == want_proto

        return matches

    def srv(self, entry: ServiceEntry, matches: Callable[[Port], bool]) -> Answer:
        target_suffix = f"{entry.service.name}.{entry.service.namespace}.svc.{self.parsed.zone}"
        targets: list[tuple[int, str, Sequence[str]]] = []
        if entry.service.headless:
            for ep in entry.endpoints:
                for port in ep.ports:
                    if matches(port):
                        targets.append((port.port, f"{ep.name}.{target_suffix}", [ep.address]))
        else:
            for port in entry.service.ports:
                if matches(port):
                    targets.append((port.port, target_suffix, entry.service.cluster_ips))
        return self.srv_records(targets)

    def srv_records(self, targets: list[tuple[int, str, Sequence[str]]]) -> Answer:
        """SRV records of (port, target, addresses): priority 0, weight 100/n as CoreDNS gives, addresses as extra."""
        if not targets:
            return self.nodata()
        weight = 100 // len(targets)
        answers: list[RR] = []
        extra: list[RR] = []
        for number, target, addresses in targets:
            answers.append(RR(self.name, SRV, self.ttl, (0, weight, number, target)))
            extra += _address_records(target, addresses, A, self.ttl)
            extra += _address_records(target, addresses, AAAA, self.ttl)
        return self.records(_unique(answers), extra)

    def external_name(self, entry: ServiceEntry, qtype: int) -> Answer:
        target = entry.service.external_name
        if _is_ip(target) or self.parsed.kind is not Kind.SERVICE:
            return self.nxdomain()  # an IP-valued externalName is not a name (CoreDNS: NXDOMAIN)
        if qtype == SRV:
            return self.nodata()
        cname = RR(self.name, CNAME, self.ttl, target)
        if qtype == CNAME:
            return self.done(Outcome.ANSWER, (cname,))
        zone = longest_zone(target, self.settings.zones)
        if zone is None:
            return self.outside(cname, target, qtype)
        if self.depth >= MAX_CNAME_CHAIN:
            return self.reads.answer(Outcome.SERVFAIL, (cname,), plugin=KUBERNETES, reason="CNAME chain too long")
        inner = Zone(target, parse_in(target, zone, self.settings), self.request, self.next, self.settings,
                     self.bound, self.depth + 1)
        chased = inner.answer(qtype)
        outcome = Outcome.ANSWER if chased.outcome is Outcome.NODATA else chased.outcome
        return self.reads.answer(outcome, (cname,) + chased.answer, chased.authority, chased.additional,
                                 chase=chased.chase, forward=chased.forward, plugin=KUBERNETES,
                                 reason=chased.reason)

    def outside(self, cname: RR, target: str, qtype: int) -> Answer:
        """A CNAME to a name outside the cluster: the rest of the chain says where the target's records come from.

        Forwarded: the router appends the upstream's records to the CNAME (CHASE).  No plugin takes
        it: the CNAME alone (a resolver follows it itself).
        """
        after = self.next(self.request.renamed(target, qtype))
        if after.outcome is Outcome.FORWARD:
            return self.reads.answer(Outcome.CHASE, (cname,), chase=target, forward=after.forward, plugin=KUBERNETES)
        return self.done(Outcome.ANSWER, (cname,))

    def imported(self, qtype: int) -> Answer:
        """A name of a ServiceImport: the import, one of its endpoints, or one of its ports.

        ClusterSetIP: its `spec.ips`, SRV per port to `<svc>.<ns>.svc.Z`.  Headless: the ready endpoints
        of every cluster, each also `<endpoint>.<cluster>.<svc>.<ns>.svc.Z`, SRV per endpoint and port
        to those names.  No import, or a headless one with nothing ready: NXDOMAIN, whatever local
        Service has the name.
        """
        parsed = self.parsed
        entry = self.reads.service_import((parsed.namespace, parsed.service))
        if entry is None:
            return self.nxdomain()
        service_import = entry.service_import
        if not entry.endpoints and (service_import.headless or self.settings.ignore_empty_service):
            return self.nxdomain()  # as a local service: no ready endpoint, no name
        if parsed.kind is Kind.CLUSTER_ENDPOINT:
            found = [ep.address for ep in entry.endpoints
                     if ep.cluster == parsed.cluster and ep.name == parsed.endpoint]
            return self.addresses(self.name, found, qtype) if found else self.nxdomain()
        if parsed.kind is Kind.SERVICE:
            if qtype == SRV:
                return self.srv_records(self.import_targets(entry, lambda port: True))
            if service_import.headless:
                return self.addresses(self.name, [ep.address for ep in entry.endpoints], qtype)
            return self.addresses(self.name, service_import.ips, qtype)
        targets = self.import_targets(entry, self.named_port())
        if not targets:
            return self.nxdomain()
        return self.srv_records(targets) if qtype == SRV else self.nodata()

    def import_targets(self, entry: ImportEntry,
                       matches: Callable[[Port], bool]) -> list[tuple[int, str, Sequence[str]]]:
        """(port, target, addresses) of the ports of an import that match."""
        service_import = entry.service_import
        suffix = f"{service_import.name}.{service_import.namespace}.svc.{self.parsed.zone}"
        if service_import.headless:
            return [(port.port, f"{ep.name}.{ep.cluster}.{suffix}", (ep.address,))
                    for ep in entry.endpoints for port in ep.ports if matches(port)]
        return [(port.port, suffix, service_import.ips) for port in service_import.ports if matches(port)]

    def pod(self, qtype: int) -> Answer:
        mode = self.settings.pods
        address = self.parsed.address
        namespace = self.parsed.namespace
        if mode is PodMode.DISABLED:
            return self.nxdomain(PODS_DISABLED)
        if not address or not self.reads.namespace_exists(namespace):
            return self.nxdomain()
        if mode is PodMode.VERIFIED and not self.reads.pod_running(namespace, address):
            return self.nxdomain(POD_NOT_RUNNING)
        return self.addresses(self.name, [address], qtype)

    def reverse(self, qtype: int) -> Answer:
        names = self.reads.reverse(self.parsed.address) if self.parsed.address else ()
        if not names:
            return self.nxdomain()  # the caller passes it on when `fallthrough` covers reverse names
        if qtype != PTR:
            return self.nodata()
        suffix = f".svc.{self.settings.primary_zone}"
        return self.records([RR(self.name, PTR, self.ttl, name + suffix) for name in names])


def parse_in(name: str, zone: str, settings: KubernetesSettings) -> Name:
    """A name parsed in the zone it lies in: a `multicluster` zone's services are ServiceImports."""
    return parse_qname(name, zone, zone in settings.multicluster)


def _join(label: str, zone: str) -> str:
    return f"{label}.{zone}" if zone else label


def _address_records(owner: str, addresses: Sequence[str], qtype: int, ttl: int) -> list[RR]:
    if qtype == A:
        records = [RR(owner, A, ttl, a) for a in addresses if ":" not in a]
    elif qtype == AAAA:
        records = [RR(owner, AAAA, ttl, a) for a in addresses if ":" in a]
    else:
        return []
    return _unique(records) if len(records) > 1 else records


def _unique(records: list[RR]) -> list[RR]:
    return list(dict.fromkeys(records))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def merge(answers: list[Answer]) -> Answer:
    """An ANY answer: every record the name has, or the name's negative answer."""
    depends = frozenset().union(*(a.depends for a in answers))
    positive = [a for a in answers if a.answer]
    if not positive:
        first = answers[0]
        return Answer(first.outcome, first.answer, first.authority, first.additional, plugin=first.plugin,
                      depends=depends)
    return Answer(Outcome.ANSWER, tuple(_unique([rr for a in positive for rr in a.answer])),
                  additional=tuple(_unique([rr for a in positive for rr in a.additional])),
                  plugin=KUBERNETES, depends=depends)
