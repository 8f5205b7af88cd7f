"""The `kubernetes` plugin: the cluster's records, answered from the registry's snapshot.

- setup.py: the directive (`kubernetes [ZONES...] { ... }`) and its settings, as CoreDNS reads them;
- qname.py: a name in a cluster zone parsed once into its kind and parts;
- zone.py: the answers, per the Kubernetes DNS specification, the MCS API's for a `multicluster`
  zone, and CoreDNS;
- here: its place in the chain.  Names outside its zones go on; names that do not exist go on when
  `fallthrough` covers them (also while the cluster is not read yet; an ExternalName whose
  in-cluster target does not exist is no such name); zone transfers are REFUSED (CoreDNS needs its
  `transfer` plugin for them).
The data itself comes from dns_server.cluster (the registry and its sources), which the runtime
opens for every block whose settings read the same source.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from dnslib import QTYPE

from dns_server.chain.plugin import Handler, Next, PluginSpec, Question, Request
from dns_server.cluster.snapshot import ServiceKey, Snapshot
from dns_server.config.model import ServerBlock
from dns_server.plugins.kubernetes.setup import KubernetesSettings, setup
from dns_server.plugins.kubernetes.zone import ANY_TYPES, Zone, merge, parse_in
from dns_server.protocol.answer import REFUSE, Answer, Outcome
from dns_server.protocol.names import is_reverse_zone, longest_zone

NAME = "kubernetes"
A, AAAA, ANY, AXFR, IXFR, SRV = QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR, QTYPE.SRV


class Kubernetes(Handler):
    def __init__(self, settings: KubernetesSettings, block: ServerBlock) -> None:
        self.settings = settings
        self.zones = settings.zones
        self.bound = block.bind

    def serve(self, request: Request, next: Next) -> Answer:
        name, qtype = request.name, request.qtype
        zone = longest_zone(name, self.zones)
        if zone is None:
            return next(request)
        if qtype == AXFR or qtype == IXFR:
            return REFUSE
        cluster = Zone(name, parse_in(name, zone, self.settings), request, next, self.settings, self.bound)
        answer = merge([cluster.answer(t) for t in ANY_TYPES]) if qtype == ANY else cluster.answer(qtype)
        if (answer.outcome in (Outcome.NXDOMAIN, Outcome.NOT_READY) and not answer.answer
                and self.settings.fallthrough.covers(name)):
            return next(request)  # only a name that does not exist: an ExternalName's CNAME is ours to give
        return answer

    def stub_questions(self, snapshot: Snapshot, services: Iterable[ServiceKey] | None) -> Iterator[Question]:
        """Each service's A and AAAA, and SRV for each of its named ports, under the cluster domain.

        Not an ExternalName's: its answer may need the upstream's records.  Not in a `multicluster`
        zone, nor the names of a service's endpoints: few pods ask for them.
        """
        zone = self.settings.primary_zone
        if zone in self.settings.multicluster or is_reverse_zone(zone):
            return
        entries = snapshot.services
        for key in entries if services is None else services:
            entry = entries.get(key)
            if entry is None or entry.service.external_name:
                continue
            namespace, name = key
            owner = f"{name}.{namespace}.svc.{zone}" if zone else f"{name}.{namespace}.svc"
            yield owner, A
            yield owner, AAAA
            ports = [port for ep in entry.endpoints for port in ep.ports] if entry.service.headless \
                else entry.service.ports
            for port_name, protocol in dict.fromkeys((port.name, port.protocol.lower()) for port in ports if port.name):
                yield f"_{port_name}._{protocol}.{owner}", SRV


def settings_of(block: ServerBlock) -> KubernetesSettings | None:
    setting: KubernetesSettings | None = block.setting(NAME)
    return setting


PLUGIN = PluginSpec(NAME, setup, Kubernetes, in_chain=True)
