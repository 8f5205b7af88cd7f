"""The pure core: (question, snapshot, server block) -> Answer.  Every decision about an answer lives here.

No I/O, no clock, no asyncio: the answer is a function of its arguments, which is what lets the
answer table keep encoded answers across snapshots.  (Malformed messages are refused where they
enter, in the pipeline, before there is a question to resolve.)

A question goes through the block's plugins in CoreDNS's order (`plugin.cfg`): `hosts`, then
`kubernetes`, then the `forward` directives in Corefile order.  A plugin either answers or passes
the question on: `hosts` passes names it has no entry for when its `fallthrough` covers them (else
SERVFAIL, as CoreDNS's hosts plugin), `kubernetes` passes names outside its zones and, when its
`fallthrough` covers them, names that do not exist.  A question no plugin takes ends in SERVFAIL
("no next plugin found"), as in CoreDNS.

Cluster answers follow the Kubernetes DNS-Based Service Discovery specification 1.1.0 and, where it
is silent, CoreDNS's kubernetes plugin (see ../shared/DNS-BEHAVIOUR.md).  Negative answers follow
RFC 2308: NXDOMAIN or NODATA, with the zone's SOA in the authority section.  Every snapshot index
the answer is read from is recorded as a dependency (`Reads`), so a change of exactly those
entries is what invalidates it.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from dnslib import QTYPE

from dns_server.cluster.records import Port
from dns_server.cluster.snapshot import (
    HOSTS,
    SYNCED,
    ServiceEntry,
    ServiceKey,
    Snapshot,
    address_dependency,
    namespace_dependency,
    pod_dependency,
    service_dependency,
)
from dns_server.config.model import KubernetesSettings, PodMode, ServerBlock
from dns_server.plugins.hosts import HostsTable
from dns_server.plugins.kubernetes.qname import Kind, Name, parse_qname
from dns_server.protocol.answer import REFUSE, RR, Answer, Dependency, Outcome, SoaData
from dns_server.protocol.names import in_zone, longest_zone

SCHEMA_VERSION = "1.1.0"  # Kubernetes DNS-Based Service Discovery specification
DNS_VERSION_TTL = 28800  # CoreDNS's TTL for dns-version
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's SOA timers
MAX_SOA_TTL = 300  # CoreDNS caps the SOA record's own TTL
MAX_CNAME_CHAIN = 8
NO_PLUGIN = "no next plugin found"  # CoreDNS's error when the chain ends without an answer

A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT = (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.NS, QTYPE.PTR,
                                          QTYPE.SOA, QTYPE.SRV, QTYPE.TXT)
ANY, AXFR, IXFR = QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR
ANY_TYPES = (A, AAAA, SRV, TXT, SOA, NS, PTR)
KUBERNETES, HOSTS_PLUGIN = "kubernetes", "hosts"


class Reads:
    """The snapshot, read through methods that record each index entry consulted as a dependency."""

    __slots__ = ("snapshot", "deps")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.deps: set[Dependency] = set()

    def service(self, key: ServiceKey) -> ServiceEntry | None:
        self.deps.add(service_dependency(key))
        return self.snapshot.services.get(key)

    def namespace_exists(self, namespace: str) -> bool:
        self.deps.add(namespace_dependency(namespace))
        return namespace in self.snapshot.namespaces

    def pod_running(self, namespace: str, address: str) -> bool:
        self.deps.add(pod_dependency((namespace, address)))
        return (namespace, address) in self.snapshot.pod_ips

    def reverse(self, address: str) -> tuple[str, ...]:
        self.deps.add(address_dependency(address))
        return self.snapshot.reverse.get(address, ())

    def synced(self) -> bool:
        if self.snapshot.synced:
            return True  # once synced, a snapshot never becomes unsynced again
        self.deps.add(SYNCED)
        return False

    def answer(self, outcome: Outcome, answer: tuple[RR, ...] = (), authority: tuple[RR, ...] = (),
               additional: tuple[RR, ...] = (), *, forward: int = -1, chase: str = "", plugin: str = "",
               reason: str = "") -> Answer:
        """An Answer that depends on everything read so far."""
        return Answer(outcome, answer, authority, additional, forward, chase, plugin, reason, frozenset(self.deps))


def resolve(name: str, qtype: int, snapshot: Snapshot, block: ServerBlock, hosts: HostsTable | None = None) -> Answer:
    """Answer one IN-class question (name: lower case, no trailing dot) as `block`'s plugins would."""
    reads = Reads(snapshot)
    if block.hosts is not None and hosts is not None:
        from_hosts = _hosts(name, qtype, block, hosts)
        if from_hosts is not None:
            return from_hosts
        reads.deps.add(HOSTS)  # passed on: the next table may have the name
    kubernetes = block.kubernetes
    if kubernetes is not None:
        zone = longest_zone(name, kubernetes.zones)
        if zone is not None:
            if qtype in (AXFR, IXFR):
                return REFUSE  # zone transfers are not offered (CoreDNS needs the transfer plugin)
            cluster = _Zone(name, parse_qname(name, zone), reads, kubernetes, block)
            if qtype == ANY:
                answer = _merge([cluster.answer(t) for t in ANY_TYPES])
            else:
                answer = cluster.answer(qtype)
            passes = answer.outcome in (Outcome.NXDOMAIN, Outcome.NOT_READY) and kubernetes.fallthrough.covers(name)
            if not passes:
                return answer
    forward = forward_index(name, block)
    if forward >= 0:
        return reads.answer(Outcome.FORWARD, forward=forward)
    end = block.chain_end  # CoreDNS's NextOrFailure: the last plugin has no next one to pass the question to
    return reads.answer(Outcome.SERVFAIL, reason=f"plugin/{end}: {NO_PLUGIN}" if end else NO_PLUGIN)


def forward_index(name: str, block: ServerBlock) -> int:
    """The index of the block's first `forward` that takes `name` (Corefile order), or -1."""
    for index, forward in enumerate(block.forward):
        if forward.handles(name):
            return index
    return -1


def _hosts(name: str, qtype: int, block: ServerBlock, hosts: HostsTable) -> Answer | None:
    """The hosts plugin's answer, or None to pass the question on (CoreDNS plugin/hosts)."""
    settings = block.hosts
    assert settings is not None
    ttl = settings.ttl
    zones = settings.zones or block.zones
    if qtype == PTR:
        address = _reverse_address(name)
        found = hosts.names(address) if address and not settings.no_reverse else ()
        if not found:
            return None  # an address without entries always goes on, whatever fallthrough says
        return Answer(Outcome.ANSWER, tuple(RR(name, PTR, ttl, n) for n in found), plugin=HOSTS_PLUGIN,
                      depends=frozenset({HOSTS}))
    if not any(in_zone(name, zone) for zone in zones):
        return None
    records: tuple[RR, ...] = ()
    if qtype in (A, AAAA):
        records = tuple(RR(name, qtype, ttl, a) for a in hosts.addresses(name, 4 if qtype == A else 6))
    if records:
        return Answer(Outcome.ANSWER, records, plugin=HOSTS_PLUGIN, depends=frozenset({HOSTS}))
    if hosts.has(name):
        return Answer(Outcome.NODATA, plugin=HOSTS_PLUGIN, depends=frozenset({HOSTS}))  # no SOA: hosts has none
    if settings.fallthrough.covers(name):
        return None
    # CoreDNS's hosts answers SERVFAIL here without an error: the errors plugin has nothing to log
    return Answer(Outcome.SERVFAIL, plugin=HOSTS_PLUGIN, depends=frozenset({HOSTS}))


def _reverse_address(name: str) -> str:
    for zone in ("in-addr.arpa", "ip6.arpa"):
        if in_zone(name, zone):
            return parse_qname(name, zone).address
    return ""


class _Zone:
    """One question against one kubernetes zone; a short-lived helper that keeps the arguments together."""

    def __init__(self, name: str, parsed: Name, reads: Reads, settings: KubernetesSettings,
                 block: ServerBlock, depth: int = 0) -> None:
        self.name = name
        self.parsed = parsed
        self.reads = reads
        self.settings = settings
        self.block = block
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

    def nxdomain(self) -> Answer:
        if not self.reads.synced():
            return self.done(Outcome.NOT_READY)  # never claim a name is missing before the first full sync
        return self.done(Outcome.NXDOMAIN, authority=(self.soa(),))

    def records(self, records: list[RR], additional: list[RR] | None = None) -> Answer:
        if not records:
            return self.nodata()
        return self.done(Outcome.ANSWER, tuple(records), additional=tuple(additional or ()))

    def addresses(self, owner: str, addresses: list[str] | tuple[str, ...], qtype: int) -> Answer:
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
            exists = self.settings.pods is not PodMode.DISABLED and self.reads.namespace_exists(self.parsed.namespace)
            return self.nodata() if exists else self.nxdomain()
        if kind is Kind.POD:
            return self.pod(qtype)
        if kind is Kind.INVALID:
            return self.nxdomain()
        entry = self.reads.service((self.parsed.namespace, self.parsed.service))
        if entry is None:
            return self.nxdomain()
        if entry.service.external_name:
            return self.external_name(entry, qtype)
        if entry.service.headless and not entry.endpoints:
            return self.nxdomain()  # CoreDNS: a headless service with no ready endpoint has no records
        if self.settings.ignore_empty_service and not entry.endpoints:
            return self.nxdomain()  # `ignore empty_service`: no ready endpoint, no name
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
        return tuple(host for host in self.block.bind if not ipaddress.ip_address(host).is_unspecified)

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
            return self.nxdomain()
        return self.addresses(self.name, found, qtype)

    def port(self, entry: ServiceEntry, qtype: int) -> Answer:
        want_port, want_proto = self.parsed.port, self.parsed.protocol

        def matches(port: Port) -> bool:
            return bool(port.name) and port.name == want_port and port.protocol.lower() == want_proto

        ports = ([p for ep in entry.endpoints for p in ep.ports] if entry.service.headless
                 else list(entry.service.ports))
        if not any(matches(p) for p in ports):
            return self.nxdomain()
        if qtype != SRV:
            return self.nodata()
        return self.srv(entry, matches)

    def srv(self, entry: ServiceEntry, matches: Callable[[Port], bool]) -> Answer:
        """SRV records (priority 0, weight 100/n as CoreDNS gives) with target addresses as extra."""
        target_suffix = f"{entry.service.name}.{entry.service.namespace}.svc.{self.parsed.zone}"
        targets: list[tuple[int, str, list[str]]] = []
        if entry.service.headless:
            for ep in entry.endpoints:
                for port in ep.ports:
                    if matches(port):
                        targets.append((port.port, f"{ep.name}.{target_suffix}", [ep.address]))
        else:
            for port in entry.service.ports:
                if matches(port):
                    targets.append((port.port, target_suffix, list(entry.service.cluster_ips)))
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
            forward = forward_index(target, self.block)
            if forward < 0:
                return self.done(Outcome.ANSWER, (cname,))  # nobody to ask for the target: the CNAME alone
            return self.reads.answer(Outcome.CHASE, (cname,), chase=target, forward=forward, plugin=KUBERNETES)
        if self.depth >= MAX_CNAME_CHAIN:
            return self.reads.answer(Outcome.SERVFAIL, (cname,), plugin=KUBERNETES, reason="CNAME chain too long")
        inner = _Zone(target, parse_qname(target, zone), self.reads, self.settings, self.block, self.depth + 1)
        chased = inner.answer(qtype)
        outcome = Outcome.ANSWER if chased.outcome is Outcome.NODATA else chased.outcome
        return self.reads.answer(outcome, (cname,) + chased.answer, chased.authority, chased.additional,
                                 chase=chased.chase, forward=chased.forward, plugin=KUBERNETES,
                                 reason=chased.reason)

    def pod(self, qtype: int) -> Answer:
        mode = self.settings.pods
        address = self.parsed.address
        namespace = self.parsed.namespace
        if mode is PodMode.DISABLED or not address or not self.reads.namespace_exists(namespace):
            return self.nxdomain()
        if mode is PodMode.VERIFIED and not self.reads.pod_running(namespace, address):
            return self.nxdomain()
        return self.addresses(self.name, [address], qtype)

    def reverse(self, qtype: int) -> Answer:
        names = self.reads.reverse(self.parsed.address) if self.parsed.address else ()
        if not names:
            return self.nxdomain()  # the caller passes it on when `fallthrough` covers reverse names
        if qtype != PTR:
            return self.nodata()
        suffix = f".svc.{self.settings.primary_zone}"
        return self.records([RR(self.name, PTR, self.ttl, name + suffix) for name in names])


def _join(label: str, zone: str) -> str:
    return f"{label}.{zone}" if zone else label


def _address_records(owner: str, addresses: list[str] | tuple[str, ...], qtype: int, ttl: int) -> list[RR]:
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


def _merge(answers: list[Answer]) -> Answer:
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
