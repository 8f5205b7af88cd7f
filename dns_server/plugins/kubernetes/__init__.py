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

from dnslib import QTYPE

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.plugins.kubernetes.setup import KubernetesSettings, setup
from dns_server.plugins.kubernetes.zone import ANY_TYPES, Zone, merge, parse_in
from dns_server.protocol.answer import REFUSE, Answer, Outcome
from dns_server.protocol.names import longest_zone

NAME = "kubernetes"
ANY, AXFR, IXFR = QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR


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


def settings_of(block: ServerBlock) -> KubernetesSettings | None:
    setting: KubernetesSettings | None = block.setting(NAME)
    return setting


PLUGIN = PluginSpec(NAME, setup, Kubernetes, in_chain=True)
