"""The `k8s_external` plugin: Services' external addresses under a zone of their own (CoreDNS 1.14's k8s_external).

`k8s_external [ZONES...] { apex LABEL; ttl 0..3600; headless; fallthrough [ZONES...] }` needs
`kubernetes` in the same server block and reads its cluster data: the same snapshot, through
`request.reads`, so a change of a Service's external addresses drops exactly the answers read from
it.  A Service's external addresses are its `spec.externalIPs`, then each load-balancer ingress
`ip`; a hostname ingress counts when it has none (cluster/records.py).  Under each zone Z:

    Z                               SOA `ns1.<apex>.Z hostmaster.<apex>.Z <serial> 7200 1800 86400 <ttl>`,
                                    NS `ns1.<apex>.Z` with its addresses as glue; other types NODATA
    <apex>.Z                        NODATA (an empty non-terminal)
    ns1.<apex>.Z                    the glue: the external IPs of kubernetes' DNS service (`dns_service`,
                                    the one that answers `ns.dns` in the cluster zone); without that
                                    service, the block's `bind` addresses
    other names under <apex>.Z      NXDOMAIN
    <ns>.Z                          NODATA when the namespace exists
    <svc>.<ns>.Z                    A/AAAA: the distinct external addresses of that family; SRV: one per
                                    port, target `<svc>.<ns>.Z`, the addresses in additional
    _<port>._<proto>.<svc>.<ns>.Z   the same for the matching ports (an underscore is optional, as in CoreDNS)
    <host>.<svc>.<ns>.Z             with `headless`: the ready endpoint of that name, for a Service without
                                    external addresses (and `<svc>.<ns>.Z` answers a headless Service's
                                    ready endpoints, SRV targets `<host>.<svc>.<ns>.Z`)
    an address in a reverse zone    PTR `<svc>.<ns>.<first zone that is not a reverse zone>` for each
                                    Service with that external address (only in k8s_external's own
                                    zones: the cluster zone never answers PTR for external addresses)

A name that does not exist (no such namespace or Service, no external address, no such port or
endpoint, more labels) is NXDOMAIN with the zone's SOA, passed on instead when `fallthrough` covers
it; a name that exists without records of the type asked is NODATA.  Every record it makes has the
plugin's `ttl`; SRV records have priority 0 and CoreDNS's weight (100 over the number of
address-port pairs).

Where this server answers differently from CoreDNS, on purpose:
- A name is never a CNAME and something else.  A Service with external addresses answers them and
  ignores ingress hostnames (CoreDNS puts a CNAME beside the A records).  The name of a Service whose
  only external address is a hostname is a CNAME to it for every type; the target's records come once
  from the rest of the chain (forwarded: upstream), whatever the number of ports (CoreDNS repeats the
  CNAME and the records per port, and answers SRV at the same name); its `_<port>._<proto>` names are SRV
  to the hostname, whose addresses the client resolves (no additional records).
- A name below a Service's name is an endpoint (`headless`) or does not exist: CoreDNS answers any
  such name of a Service with external addresses with those addresses.
- SRV and CNAME records have this plugin's `ttl` (CoreDNS gives them the kubernetes plugin's).
- A PTR target's zone is the first zone that is not a reverse zone (CoreDNS: the first zone); an
  address name with a PTR answers other types NODATA (CoreDNS: NXDOMAIN).
- `apex` is one label (CoreDNS takes more, then answers none of `ns1.<apex>.Z`); a second
  `k8s_external` in a block is refused (CoreDNS merges them); zone transfers are REFUSED (CoreDNS needs
  its `transfer` plugin, which this server does not have); before the cluster is first read, a name
  that would be NXDOMAIN is SERVFAIL, as in the cluster zone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Sequence

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.cluster.records import Port, Service
from dns_server.cluster.snapshot import ServiceEntry
from dns_server.config.model import NO_FALLTHROUGH, Fallthrough, ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.plugins.kubernetes.qname import parse_qname
from dns_server.protocol.answer import REFUSE, RR, Answer, Outcome, SoaData
from dns_server.protocol.codes import AAAA, AXFR, CNAME, IXFR, NS, PTR, SOA, SRV, A
from dns_server.protocol.names import in_zone, is_reverse_zone, longest_zone

NAME = "k8s_external"
KUBERNETES = "kubernetes"
DEFAULT_APEX = "dns"
DEFAULT_TTL = 5
MAX_TTL = 3600
NS1, HOSTMASTER = "ns1", "hostmaster"
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400  # CoreDNS's k8s_external SOA timers
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")

# An SRV entry: the target, the port (None: the service has no ports, CoreDNS's port -1), its addresses.
Target = tuple[str, Port | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ExternalSettings:
    zones: tuple[str, ...]
    apex: str = DEFAULT_APEX  # the label under each zone that holds the name server (`ns1.<apex>.<zone>`)
    ttl: int = DEFAULT_TTL
    headless: bool = False  # headless Services' ready endpoints, by name too
    fallthrough: Fallthrough = NO_FALLTHROUGH


def setup(found: Sequence[Directive], context: SetupContext) -> ExternalSettings:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    if KUBERNETES not in {directive.name.text for directive in context.directives}:
        raise plugin.error(directive.name, "kubernetes plugin not loaded")  # CoreDNS says so at start-up
    values: dict[str, object] = {"zones": plugin.zones(directive.args) or context.zones}
    for option in plugin.options(directive):
        name = option.name.text
        if name == "ttl":
            token = plugin.one_arg(option)
            ttl = plugin.atoi(token)
            if not 0 <= ttl <= MAX_TTL:
                raise plugin.error(token, f"ttl must be in range [0, {MAX_TTL}]: {ttl}")
            values["ttl"] = ttl
        elif name == "apex":
            token = plugin.one_arg(option)
            if not _LABEL.fullmatch(token.text.lower()):
                raise plugin.error(token, f"apex must be one DNS label: {token.text}")
            values["apex"] = token.text.lower()
        elif name == "headless":
            plugin.no_args(option)
            values["headless"] = True
        elif name == "fallthrough":
            values["fallthrough"] = plugin.fallthrough(option)
        else:
            raise plugin.unknown(option)
    return ExternalSettings(**values)  # type: ignore[arg-type]


class External(Handler):
    def __init__(self, settings: ExternalSettings, block: ServerBlock) -> None:
        self.settings = settings
        self.dns_service: tuple[str, str] = block.setting(KUBERNETES).dns_service
        # without the DNS service, the addresses the block listens on (CoreDNS: the machine's own)
        self.bound = tuple(host for host in block.bind if not ipaddress.ip_address(host).is_unspecified)
        self.ptr_zone = next((zone for zone in settings.zones if not is_reverse_zone(zone)), settings.zones[0])

    def serve(self, request: Request, next: Next) -> Answer:
        zone = longest_zone(request.name, self.settings.zones)
        if zone is None:
            return next(request)
        if request.qtype == AXFR or request.qtype == IXFR:
            return REFUSE
        return _Question(self, zone, request, next).answer()


class _Question:
    """One question in one of the plugin's zones; a short-lived helper that keeps the arguments together."""

    def __init__(self, plugin: External, zone: str, request: Request, next: Next) -> None:
        self.plugin = plugin
        self.settings = plugin.settings
        self.zone = zone
        self.request = request
        self.reads = request.reads
        self.next = next
        self.name = request.name
        self.qtype = request.qtype
        self.ttl = plugin.settings.ttl
        self.apex_name = _join(self.settings.apex, zone)
        self.ns1 = f"{NS1}.{self.apex_name}"

    # -- outcomes ---------------------------------------------------------------------------------
    def done(self, outcome: Outcome, answer: tuple[RR, ...] = (), authority: tuple[RR, ...] = (),
             additional: tuple[RR, ...] = ()) -> Answer:
        return self.reads.answer(outcome, answer, authority, additional, plugin=NAME)

    def soa(self) -> RR:
        data: SoaData = (self.ns1, f"{HOSTMASTER}.{self.apex_name}", self.reads.snapshot.serial, SOA_REFRESH,
                         SOA_RETRY, SOA_EXPIRE, self.ttl)
        return RR(self.zone, SOA, self.ttl, data)

    def nodata(self) -> Answer:
        return self.done(Outcome.NODATA, authority=(self.soa(),))

    def nxdomain(self) -> Answer:
        return self.done(Outcome.NXDOMAIN, authority=(self.soa(),))

    def missing(self) -> Answer:
        """No such name in the cluster: the next plugin's, when `fallthrough` covers it."""
        if self.settings.fallthrough.covers(self.name):
            return self.next(self.request)
        if not self.reads.synced():
            return self.done(Outcome.NOT_READY)  # never claim a name is missing before the first full sync
        return self.nxdomain()

    def records(self, records: list[RR], additional: list[RR] | None = None) -> Answer:
        if not records:
            return self.nodata()
        return self.done(Outcome.ANSWER, tuple(records), additional=tuple(additional or ()))

    # -- dispatch ---------------------------------------------------------------------------------
    def answer(self) -> Answer:
        if self.name == self.zone:
            return self.apex()
        if in_zone(self.name, self.apex_name):
            return self.below_apex()
        if is_reverse_zone(self.zone):
            address = parse_qname(self.name, self.zone).address
            if address:
                return self.reverse(address)
        labels = (self.name[: -len(self.zone) - 1] if self.zone else self.name).split(".")
        labels.reverse()  # the namespace first, as CoreDNS reads them
        if len(labels) == 1:
            return self.nodata() if self.reads.namespace_exists(labels[0]) else self.missing()
        if len(labels) > 4:
            return self.missing()
        entry = self.reads.service((labels[0], labels[1]))
        if entry is None:
            return self.missing()
        endpoint = _strip(labels[2]) if len(labels) == 3 else ""
        port, protocol = (_strip(labels[3]), _strip(labels[2])) if len(labels) == 4 else ("", "")
        service = entry.service
        reachable = bool(service.external_ips or service.external_hostname)
        if self.settings.headless and not reachable and (service.headless or endpoint):
            return self.endpoints(entry, endpoint, port, protocol)
        if endpoint or not reachable:
            return self.missing()
        return self.external(service, port, protocol, bare=len(labels) == 2)

    def apex(self) -> Answer:
        if self.qtype == SOA:
            return self.done(Outcome.ANSWER, (self.soa(),))
        if self.qtype == NS:
            addresses = self.glue()
            return self.done(Outcome.ANSWER, (RR(self.zone, NS, self.ttl, self.ns1),),
                             additional=tuple(_addresses(self.ns1, addresses, A, self.ttl)
                                              + _addresses(self.ns1, addresses, AAAA, self.ttl)))
        return self.nodata()

    def below_apex(self) -> Answer:
        if self.name == self.apex_name:
            return self.nodata()
        if self.name == self.ns1:
            return self.records(_addresses(self.name, self.glue(), self.qtype, self.ttl))
        return self.nxdomain()  # never passed on, as CoreDNS

    def glue(self) -> tuple[str, ...]:
        """The name server's addresses: the external IPs of the DNS service (with `headless`, a headless
        DNS service's ready endpoints), else the block's bind addresses."""
        entry = self.reads.service(self.plugin.dns_service)
        if entry is None:
            return self.plugin.bound
        if self.settings.headless and entry.service.headless:
            return tuple(ep.address for ep in entry.endpoints)
        return entry.service.external_ips

    # -- names of the cluster ---------------------------------------------------------------------
    def external(self, service: Service, port: str, protocol: str, bare: bool) -> Answer:
        ports = [p for p in service.ports or (None,) if _matches(p, port, protocol)]
        if not ports:
            return self.missing()
        if service.external_ips:
            addresses = service.external_ips
            if self.qtype == A or self.qtype == AAAA:
                return self.records(_addresses(self.name, addresses, self.qtype, self.ttl))
            if self.qtype == SRV:
                target = _join(f"{service.name}.{service.namespace}", self.zone)
                return self.srv([(target, p, addresses) for p in ports], len(addresses) * len(ports))
            return self.nodata()
        if bare:
            return self.cname(service.external_hostname)
        if self.qtype == SRV:
            return self.srv([(service.external_hostname, p, ()) for p in ports], len(ports))
        return self.nodata()

    def endpoints(self, entry: ServiceEntry, endpoint: str, port: str, protocol: str) -> Answer:
        service = entry.service
        suffix = _join(f"{service.name}.{service.namespace}", self.zone)
        found: list[Target] = [(f"{ep.name}.{suffix}", p, (ep.address,))
                               for ep in entry.endpoints if not endpoint or ep.name == endpoint
                               for p in ep.ports or (None,) if _matches(p, port, protocol)]
        if not found:
            return self.missing()
        if self.qtype == A or self.qtype == AAAA:
            return self.records(_addresses(self.name, [target[2][0] for target in found], self.qtype, self.ttl))
        if self.qtype == SRV:
            return self.srv(found, len(found))
        return self.nodata()

    def srv(self, targets: list[Target], count: int) -> Answer:
        """SRV records, priority 0 and CoreDNS's weight (100 / `count` address-port pairs, at least 1),
        one per target and port number, with the targets' addresses in additional."""
        weight = max(1, 100 // count)
        records: list[RR] = []
        extra: list[RR] = []
        for target, port, addresses in targets:
            if port is None:
                continue
            records.append(RR(self.name, SRV, self.ttl, (0, weight, port.port, target)))
            extra += [RR(target, AAAA if ":" in address else A, self.ttl, address) for address in addresses]
        return self.records(_unique(records), _unique(extra))

    def cname(self, target: str) -> Answer:
        """The CNAME to a load-balancer hostname, with the target's records from the rest of the chain, once."""
        cname = RR(self.name, CNAME, self.ttl, target)
        if self.qtype == CNAME:
            return self.done(Outcome.ANSWER, (cname,))
        after = self.next(self.request.renamed(target))
        if after.outcome is Outcome.FORWARD:  # the router appends the upstream's records
            return self.reads.answer(Outcome.CHASE, (cname,), chase=target, forward=after.forward, plugin=NAME)
        if after.outcome is Outcome.CHASE:  # the target is itself a CNAME that leads upstream
            return self.reads.answer(Outcome.CHASE, (cname,) + after.answer, chase=after.chase,
                                     forward=after.forward, plugin=NAME)
        if after.outcome in (Outcome.ANSWER, Outcome.NODATA, Outcome.NXDOMAIN):
            outcome = Outcome.ANSWER if after.outcome is Outcome.NODATA else after.outcome
            return self.done(outcome, (cname,) + after.answer, after.authority, after.additional)
        return self.done(Outcome.ANSWER, (cname,))  # nothing answers the target: the client follows the CNAME

    def reverse(self, address: str) -> Answer:
        names = self.reads.external(address)
        if not names:
            return self.missing()
        if self.qtype != PTR:
            return self.nodata()
        return self.records([RR(self.name, PTR, self.ttl, _join(name, self.plugin.ptr_zone)) for name in names])


def _join(label: str, zone: str) -> str:
    return f"{label}.{zone}" if zone else label


def _strip(label: str) -> str:
    """A port or protocol label without its leading underscore (CoreDNS's stripUnderscore)."""
    return label[1:] if label.startswith("_") else label


def _matches(port: Port | None, name: str, protocol: str) -> bool:
    """Whether a port matches the name and protocol asked ("" matches any; a service without ports only that)."""
    if port is None:
        return not name and not protocol
    return (not name or name == port.name) and (not protocol or protocol == port.protocol.lower())


def _addresses(owner: str, addresses: Sequence[str], qtype: int, ttl: int) -> list[RR]:
    """The distinct addresses of the family asked, as A or AAAA records ([] for other types)."""
    if qtype == A:
        return _unique([RR(owner, A, ttl, address) for address in addresses if ":" not in address])
    if qtype == AAAA:
        return _unique([RR(owner, AAAA, ttl, address) for address in addresses if ":" in address])
    return []


def _unique(records: list[RR]) -> list[RR]:
    return list(dict.fromkeys(records))


PLUGIN = PluginSpec(NAME, setup, External, in_chain=True)
