"""The pure core: (question, snapshot, config) -> Answer.  Every rcode decision lives here.

No I/O, no clock, no asyncio: the answer is a function of its arguments, which is what lets the
pipeline cache encoded answers per snapshot.  Behaviour follows the Kubernetes DNS-Based Service
Discovery specification 1.1.0 and, where it is silent, CoreDNS's kubernetes plugin
(see ../shared/DNS-BEHAVIOUR.md).  Negative answers follow RFC 2308: NXDOMAIN or NODATA, with
the zone's SOA in the authority section.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Union

from dnslib import CLASS, QTYPE, RCODE

from dns_server.config import Config
from dns_server.qname import Kind, Name, parse_qname
from dns_server.records import Port
from dns_server.snapshot import ServiceEntry, Snapshot

SCHEMA_VERSION = "1.1.0"  # Kubernetes DNS-Based Service Discovery specification
DNS_VERSION_TTL = 28800  # CoreDNS's TTL for dns-version
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's SOA timers
MAX_SOA_TTL = 300  # CoreDNS caps the SOA record's own TTL
MAX_CNAME_CHAIN = 8

A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT = (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.NS, QTYPE.PTR,
                                          QTYPE.SOA, QTYPE.SRV, QTYPE.TXT)
ANY, AXFR, IXFR = QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR
NOERROR, NXDOMAIN, SERVFAIL, REFUSED = RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.SERVFAIL, RCODE.REFUSED
ANY_TYPES = (A, AAAA, SRV, TXT, SOA, NS, PTR)

SrvData = tuple[int, int, int, str]  # priority, weight, port, target
SoaData = tuple[str, str, int, int, int, int, int]  # mname, rname, serial, refresh, retry, expire, minimum
RData = Union[str, SrvData, SoaData]


@dataclass(frozen=True, slots=True)
class RR:
    """One resource record: names are lower case, without the trailing dot."""

    name: str
    rtype: int
    ttl: int
    data: RData  # A/AAAA: address; CNAME/NS/PTR: name; TXT: text; SRV: SrvData; SOA: SoaData


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int = NOERROR
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authoritative: bool = True
    forward: bool = False  # the question is not ours: send it upstream
    chase: str = ""  # after `answer` (a CNAME), the target's records come from upstream


FORWARD = Answer(authoritative=False, forward=True)
REFUSE = Answer(REFUSED, authoritative=False)


def resolve(name: str, qtype: int, qclass: int, snapshot: Snapshot, config: Config) -> Answer:
    """Answer one question from the snapshot (name: lower case, no trailing dot)."""
    if qclass != CLASS.IN:
        return REFUSE
    parsed = parse_qname(name, config.cluster_domain)
    if parsed.kind is Kind.OUTSIDE:
        return FORWARD
    if qtype in (AXFR, IXFR):
        return REFUSE  # zone transfers are not offered (CoreDNS needs the transfer plugin for them)
    if qtype == ANY:
        return _merge([_Zone(name, parsed, snapshot, config).answer(t) for t in ANY_TYPES])
    return _Zone(name, parsed, snapshot, config).answer(qtype)


class _Zone:
    """One question against one zone; a short-lived helper that keeps the arguments together."""

    def __init__(self, name: str, parsed: Name, snapshot: Snapshot, config: Config, depth: int = 0) -> None:
        self.name = name
        self.parsed = parsed
        self.snapshot = snapshot
        self.config = config
        self.ttl = config.ttl
        self.depth = depth

    # -- outcomes ---------------------------------------------------------------------------------
    def soa(self) -> RR:
        zone = self.parsed.zone
        data: SoaData = (f"ns.dns.{zone}", f"hostmaster.{zone}", self.snapshot.serial,
                         SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        return RR(zone, SOA, min(self.ttl, MAX_SOA_TTL), data)

    def nodata(self) -> Answer:
        return Answer(NOERROR, authority=(self.soa(),))

    def nxdomain(self) -> Answer:
        if not self.snapshot.synced:
            return Answer(SERVFAIL)  # never claim a name is missing before the first full sync
        return Answer(NXDOMAIN, authority=(self.soa(),))

    def records(self, records: list[RR], additional: list[RR] | None = None) -> Answer:
        if not records:
            return self.nodata()
        return Answer(NOERROR, tuple(records), additional=tuple(additional or ()))

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
            return self.nodata() if self.parsed.namespace in self.snapshot.namespaces else self.nxdomain()
        if kind is Kind.POD_NAMESPACE:
            exists = self.config.pods != "disabled" and self.parsed.namespace in self.snapshot.namespaces
            return self.nodata() if exists else self.nxdomain()
        if kind is Kind.POD:
            return self.pod(qtype)
        entry = self.snapshot.services.get((self.parsed.namespace, self.parsed.service))
        if entry is None or kind is Kind.INVALID:
            return self.nxdomain()
        if entry.service.external_name:
            return self.external_name(entry, qtype)
        if entry.service.headless and not entry.endpoints:
            return self.nxdomain()  # CoreDNS: a headless service with no ready endpoint has no records
        if kind is Kind.SERVICE:
            return self.service(entry, qtype)
        if kind is Kind.ENDPOINT:
            return self.endpoint(entry, qtype)
        return self.port(entry, qtype)

    def apex(self, qtype: int) -> Answer:
        if qtype == SOA:
            return Answer(NOERROR, (self.soa(),))
        if qtype == NS:
            ns_name = f"ns.dns.{self.parsed.zone}"
            glue = _address_records(ns_name, self.dns_addresses(), A, self.ttl)
            glue += _address_records(ns_name, self.dns_addresses(), AAAA, self.ttl)
            return self.records([RR(self.name, NS, self.ttl, ns_name)], glue)
        return self.nodata()

    def dns_addresses(self) -> tuple[str, ...]:
        """The cluster DNS service's addresses (CoreDNS answers ns.dns.Z with its own service)."""
        entry = self.snapshot.services.get(self.config.dns_service)
        if entry is not None and entry.service.cluster_ips:
            return entry.service.cluster_ips
        return tuple(host for host, _ in self.config.listen if not ipaddress.ip_address(host).is_unspecified)

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
        zone_suffix = f"{entry.service.name}.{entry.service.namespace}.svc.{self.config.cluster_domain}"
        targets: list[tuple[int, str, list[str]]] = []
        if entry.service.headless:
            for ep in entry.endpoints:
                for port in ep.ports:
                    if matches(port):
                        targets.append((port.port, f"{ep.name}.{zone_suffix}", [ep.address]))
        else:
            for port in entry.service.ports:
                if matches(port):
                    targets.append((port.port, zone_suffix, list(entry.service.cluster_ips)))
        if not targets:
            return self.nodata()
        weight = 100 // len(targets)
        answers: list[RR] = []
        extra: list[RR] = []
        for number, target, addresses in targets:
            answers.append(RR(self.name, SRV, self.ttl, (0, weight, number, target)))
            for rr in _address_records(target, addresses, A, self.ttl) + _address_records(
                    target, addresses, AAAA, self.ttl):
                if rr not in extra:
                    extra.append(rr)
        return self.records(_unique(answers), extra)

    def external_name(self, entry: ServiceEntry, qtype: int) -> Answer:
        target = entry.service.external_name
        if _is_ip(target) or self.parsed.kind is not Kind.SERVICE:
            return self.nxdomain()  # an IP-valued externalName is not a name (CoreDNS: NXDOMAIN)
        if qtype == SRV:
            return self.nodata()
        cname = RR(self.name, CNAME, self.ttl, target)
        if qtype == CNAME:
            return Answer(NOERROR, (cname,))
        inner = parse_qname(target, self.config.cluster_domain)
        if inner.kind is Kind.OUTSIDE:
            return Answer(NOERROR, (cname,), chase=target)
        if self.depth >= MAX_CNAME_CHAIN:
            return Answer(SERVFAIL, (cname,))
        chased = _Zone(target, inner, self.snapshot, self.config, self.depth + 1).answer(qtype)
        return Answer(chased.rcode, (cname,) + chased.answer, chased.authority, chased.additional,
                      chase=chased.chase)

    def pod(self, qtype: int) -> Answer:
        mode = self.config.pods
        address = self.parsed.address
        namespace = self.parsed.namespace
        if mode == "disabled" or not address or namespace not in self.snapshot.namespaces:
            return self.nxdomain()
        if mode == "verified" and (namespace, address) not in self.snapshot.pod_ips:
            return self.nxdomain()
        return self.addresses(self.name, [address], qtype)

    def reverse(self, qtype: int) -> Answer:
        names = self.snapshot.reverse.get(self.parsed.address) if self.parsed.address else None
        if not names:
            if self.config.reverse_fallthrough:
                return FORWARD  # CoreDNS's default Corefile: fallthrough in-addr.arpa ip6.arpa
            return self.nxdomain()
        if qtype != PTR:
            return self.nodata()
        suffix = f".svc.{self.config.cluster_domain}"
        return self.records([RR(self.name, PTR, self.ttl, name + suffix) for name in names])


def _address_records(owner: str, addresses: list[str] | tuple[str, ...], qtype: int, ttl: int) -> list[RR]:
    if qtype == A:
        return _unique([RR(owner, A, ttl, a) for a in addresses if ":" not in a])
    if qtype == AAAA:
        return _unique([RR(owner, AAAA, ttl, a) for a in addresses if ":" in a])
    return []


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
    positive = [a for a in answers if a.answer]
    if not positive:
        return answers[0]
    return Answer(NOERROR, tuple(_unique([rr for a in positive for rr in a.answer])),
                  additional=tuple(_unique([rr for a in positive for rr in a.additional])))

