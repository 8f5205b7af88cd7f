"""The `autopath` plugin: walks a client's search path on the server (CoreDNS 1.14's autopath).

`autopath [ZONES...] RESOLV-CONF|@kubernetes`.  A pod's resolver with `ndots:5` first asks
`frontend.shop` as `frontend.shop.shop.svc.cluster.local`; autopath strips the first search element
and tries the rest of the path in one go, so the pod gets its answer on the first question.

- Search path: with `@kubernetes`, for a client whose address is a running pod's in namespace N:
  `N.svc.Z`, `svc.Z`, `Z` (Z the kubernetes zone the name is in), the search domains of this
  server's own resolv.conf (/etc/resolv.conf, read at start; none when it is missing), then the
  root.  With a RESOLV-CONF file: its search domains, then the root, for every client.  Names of
  the path outside the server block's zones are not tried (this block's chain does not serve them).
- Only names strictly below the first element are walked; the element itself and every other
  name are answered as without autopath.  `base` is the name without the first element; each
  `base.<element>` is asked of the rest of the chain, same type; the first answer that is not
  NXDOMAIN wins (NODATA too).  Its records follow a CNAME from the name asked to the owner of its
  first record, with that record's TTL; a first-try hit has none.  When every try is NXDOMAIN the
  first try's answer is the reply.
- The first try is the name asked itself, so it is made before the client is read: when it is not
  NXDOMAIN it is every client's answer and the answer table keeps it.  So it is when N is no
  namespace of the cluster (`x.com.svc.Z`, a pod's second search try for `x.com`): the snapshot
  knows the namespace of every pod, so no client can be in N until N appears, which drops the
  answer.  Only a first-try NXDOMAIN under a namespace the cluster has reads the client's
  namespace (`request.client_namespace()`): the answer table keeps that answer
  per namespace and serves it only to clients whose address it takes for a pod of that namespace,
  looking the address up afresh for each query (an address that changes hands gets its new
  namespace's answer at once).  Clients that are no pod's (hostNetwork, finished, outside the
  cluster) share one answer: the first try's.  Behind a trusted node-local cache the reply echoes
  the client-subnet option with scope /32, so the cache keeps it for that one pod.
- A try that goes upstream (`forward`): the chain cannot see the upstream's rcode, so the walk stops
  there, as CoreDNS's stops at any relayed reply that is not NXDOMAIN: the reply is a CNAME from the
  name asked to the tried name (TTL `FORWARDED_TTL`) with the upstream's records and rcode appended
  by the router (`Outcome.CHASE`).  Where CoreDNS would go on past an upstream NXDOMAIN, this
  server's reply is that NXDOMAIN, and the client goes on searching itself, as without autopath.
- A reply the walk found carries the plugin label `autopath` (CoreDNS's writer), which is what
  `coredns_autopath_success_total{server}` counts.  A first-try hit is the ordinary answer (kept
  for every client, so it cannot know whether a pod asked): unlike CoreDNS, it is not counted.

The address -> namespace index is the snapshot's `pod_namespaces` (registry.claimant says which of
several pods claiming one address counts: never hostNetwork or finished pods; a live pod before a
terminating one; the newest claim between live ones).  An address reused before the watch tells of
it still names the old pod's namespace: no server can close that window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive, Token
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.codes import CNAME
from dns_server.protocol.names import in_zone, longest_zone

NAME = "autopath"
KUBERNETES = "kubernetes"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
FORWARDED_TTL = 5  # the CNAME before a forwarded try's records (their TTLs are known only upstream)


@dataclass(frozen=True, slots=True)
class AutopathSettings:
    zones: tuple[str, ...]
    search: tuple[str, ...]  # RESOLV-CONF's search domains; with @kubernetes: the server's own
    kubernetes: bool  # @kubernetes: the path is the client pod's


def resolv_conf_search(text: str) -> tuple[str, ...]:
    """The search domains of a resolv.conf (the last `search` or `domain` line, as miekg/dns reads it)."""
    found: list[str] = []
    for line in text.splitlines():
        words = re.split(r"[ \t]+", line.split("#", 1)[0].split(";", 1)[0].strip())
        if words[0] == "search":
            found = words[1:]
        elif words[0] == "domain" and len(words) > 1:
            found = words[1:2]
    return tuple(dict.fromkeys(name.lower().rstrip(".") for name in found if name.rstrip(".")))


def setup(found: Sequence[Directive], context: SetupContext) -> AutopathSettings:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    plugin.no_options(directive)
    if not directive.args:
        raise plugin.error(directive.name, "no resolv-conf specified")
    *zone_tokens, source = directive.args
    zones = plugin.zones(zone_tokens) or context.zones
    if source.text.startswith("@"):
        if source.text != "@" + KUBERNETES:
            raise plugin.error(source, f"{source.text[1:]} does not implement the AutoPather interface "
                                       "(only @kubernetes is supported)")
        _check_kubernetes(plugin, source, context.directives)
        try:
            search = resolv_conf_search(context.resolv_conf(HOST_RESOLV_CONF))
        except OSError:
            search = ()  # no resolv.conf: no extra search domains
        return AutopathSettings(zones, search, True)
    try:
        text = context.resolv_conf(Path(source.text))
    except OSError as error:
        raise plugin.error(source, f'failed to parse "{source.text}": {error.strerror or error}') from None
    return AutopathSettings(zones, resolv_conf_search(text), False)


def _check_kubernetes(plugin: Reader, source: Token, directives: Sequence[Directive]) -> None:
    """@kubernetes finds pods only with `kubernetes { pods verified }` in the block: say so at start."""
    for directive in directives:
        if directive.name.text == KUBERNETES:
            for option in directive.block or ():
                if option.name.text == "pods" and [arg.text for arg in option.args] == [PodMode.VERIFIED.value]:
                    return
    raise plugin.error(source, "@kubernetes needs the kubernetes plugin with 'pods verified' in the same "
                               "server block")


class Autopath(Handler):
    def __init__(self, settings: AutopathSettings, kubernetes_zones: tuple[str, ...],
                 block_zones: tuple[str, ...]) -> None:
        self.zones = settings.zones
        self.block_zones = block_zones
        self.search = settings.search
        self.kubernetes = settings.kubernetes
        self.kubernetes_zones = kubernetes_zones

    def serve(self, request: Request, next: Next) -> Answer:
        name = request.name
        if longest_zone(name, self.zones) is None:
            return next(request)
        if self.kubernetes:
            return self._pod_path(request, next)
        if not self.search or name == self.search[0] or not in_zone(name, self.search[0]):
            return next(request)
        return self._walk(request, next, next(request), self.search[0], self.search[1:])

    def _pod_path(self, request: Request, next: Next) -> Answer:
        name = request.name
        zone = longest_zone(name, self.kubernetes_zones)
        if zone is None:
            return next(request)
        labels = name[:len(name) - len(zone)].rstrip(".").split(".") if zone else name.split(".")
        if len(labels) < 3 or labels[-1] != "svc":
            return next(request)  # not strictly below any `<namespace>.svc.<zone>`
        first = next(request)  # base.N.svc.Z is the name asked: the same answer for every client
        if first.outcome is not Outcome.NXDOMAIN:
            return first
        if not request.reads.namespace_exists(labels[-2]):
            return _with_reads(first, request)  # no pod is in N: every client's answer, until N appears
        namespace = request.client_namespace()
        if namespace != labels[-2]:
            return _with_reads(first, request)
        svc_zone = f"svc.{zone}" if zone else "svc"
        return self._walk(request, next, first, f"{namespace}.{svc_zone}", (svc_zone, zone) + self.search)

    def _walk(self, request: Request, next: Next, first: Answer, element: str, rest: tuple[str, ...]) -> Answer:
        """Try base + each of `rest`, then base; `first` is the answer to base + `element` (the name asked)."""
        if first.outcome is not Outcome.NXDOMAIN:
            return first
        name = request.name
        base = name[:len(name) - len(element) - 1]
        for domain in dict.fromkeys(rest + ("",)):
            tried = f"{base}.{domain}" if domain else base
            if tried == name or longest_zone(tried, self.block_zones) is None:
                continue  # asked already; or a name this block does not serve (its chain could only fail)
            found = next(request.renamed(tried))
            if found.outcome is Outcome.NXDOMAIN:
                continue
            if found.outcome is Outcome.FORWARD:
                found = Answer(Outcome.CHASE, (RR(name, CNAME, FORWARDED_TTL, tried),), forward=found.forward,
                               chase=tried, plugin=NAME, depends=found.depends)
            elif found.answer and found.answer[0].name != name:
                owner = found.answer[0]
                found = found._replace(answer=(RR(name, CNAME, owner.ttl, owner.name),) + found.answer)
            return _with_reads(found._replace(plugin=NAME), request)  # the plugin label counts successes
        return _with_reads(first, request)


def _with_reads(answer: Answer, request: Request) -> Answer:
    """The answer, depending on everything autopath read (with @kubernetes, the client's namespace, if it did)."""
    return answer._replace(depends=answer.depends | request.reads.deps)


def handler(settings: AutopathSettings, block: ServerBlock) -> Handler:
    kubernetes_zones: tuple[str, ...] = ()
    for name, plugin_settings in block.plugins:
        if name == KUBERNETES and isinstance(plugin_settings, KubernetesSettings):
            kubernetes_zones = plugin_settings.zones
    return Autopath(settings, kubernetes_zones, block.zones)


PLUGIN = PluginSpec(NAME, setup, handler, in_chain=True)
