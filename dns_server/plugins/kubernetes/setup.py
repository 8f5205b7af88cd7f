"""The `kubernetes` directive and its settings, as CoreDNS 1.14's kubernetes plugin reads them.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dns_server.cluster.sources.settings import SourceSettings
from dns_server.config.model import NO_FALLTHROUGH, Fallthrough
from dns_server.config.setup import Reader, SetupContext, last
from dns_server.config.syntax import Directive
from dns_server.protocol.names import is_reverse_zone

log = logging.getLogger(__name__)

UNSUPPORTED = ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")  # CoreDNS options this server refuses by name
DEFAULT_CLUSTER_DOMAIN = "cluster.local"  # kubelet --cluster-domain default
DEFAULT_TTL = 5  # kubernetes plugin `ttl`
MAX_TTL = 3600  # kubernetes plugin upper bound for `ttl`
DEFAULT_STARTUP_TIMEOUT = 5.0  # kubernetes plugin `startup_timeout`
DEFAULT_DNS_SERVICE = ("kube-system", "kube-dns")  # the Service kubeadm creates for cluster DNS
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}"
_LABEL_VALUE = rf"(?:{_LABEL_NAME})?"
_REQUIREMENT = re.compile(
    rf"\s*(?:!?\s*{_LABEL_KEY}|{_LABEL_KEY}\s*(?:==?|!=)\s*{_LABEL_VALUE}"
    rf"|{_LABEL_KEY}\s+(?:in|notin)\s*\(\s*{_LABEL_NAME}(?:\s*,\s*{_LABEL_VALUE})*\s*\))\s*")


class PodMode(enum.Enum):
    """kubernetes `pods`: which `<a-b-c-d>.<ns>.pod.<zone>` names exist."""

    DISABLED = "disabled"  # none (CoreDNS's default)
    INSECURE = "insecure"  # any address, in a namespace that exists (kubeadm's Corefile)
    VERIFIED = "verified"  # only the addresses of running pods in that namespace


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """The `kubernetes` plugin: which zones it answers from the cluster, and how it reads the cluster."""

    zones: tuple[str, ...]
    # where the cluster data comes from (one of these, or in-cluster credentials when all are unset)
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None  # CERT KEY CACERT, with `endpoint`
    kubeconfig: Path | None = None
    context: str | None = None
    fixtures: Path | None = None  # our extension: manifests on disk instead of the API
    watch_file: Path | None = None  # a recorded watch stream replayed on top of `fixtures`
    # what is read
    namespaces: tuple[str, ...] = ()
    labels: str | None = None
    namespace_labels: str | None = None
    # how it answers
    pods: PodMode = PodMode.DISABLED
    endpoint_pod_names: bool = False
    ttl: int = DEFAULT_TTL
    noendpoints: bool = False
    fallthrough: Fallthrough = NO_FALLTHROUGH
    ignore_empty_service: bool = False
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    multicluster: tuple[str, ...] = ()  # zones answered from the ServiceImports (MCS API), among `zones`
    dns_service: tuple[str, str] = DEFAULT_DNS_SERVICE  # answers `ns.dns.<zone>`

    @property
    def primary_zone(self) -> str:
        """The zone names are built in (PTR and SRV targets): the first that is not a reverse zone."""
        for zone in self.zones:
            if not is_reverse_zone(zone):
                return zone
        return self.zones[0]

    @property
    def source(self) -> SourceSettings:
        """What decides the watches and the records kept: blocks that agree on it share one registry."""
        return SourceSettings(self.endpoint, self.tls, self.kubeconfig, self.context, self.fixtures,
                              self.watch_file, self.namespaces, self.labels, self.namespace_labels,
                              self.pods is PodMode.VERIFIED, self.endpoint_pod_names, self.noendpoints,
                              bool(self.multicluster))


def setup(found: Sequence[Directive], context: SetupContext) -> KubernetesSettings:
    plugin = Reader("kubernetes", UNSUPPORTED)
    directive = plugin.once(found)
    zones = plugin.zones(directive.args) or context.zones
    if all(is_reverse_zone(zone) for zone in zones):
        raise plugin.error(directive.name, "non-reverse zone name must be used")
    values: dict[str, object] = {"zones": zones}
    for option in plugin.options(directive):
        name, args = option.name.text, option.args
        if name in ("endpoint_pod_names", "noendpoints"):
            plugin.no_args(option)
            values[name] = True
        elif name == "pods":
            mode = plugin.one_arg(option)
            if mode.text not in {m.value for m in PodMode}:
                raise plugin.error(mode, f"wrong value for pods: {mode.text},  must be one of: disabled, verified, "
                                         "insecure")
            values["pods"] = PodMode(mode.text)
        elif name == "namespaces":
            if not args:
                raise plugin.arg_error(option.name)
            values["namespaces"] = tuple(dict.fromkeys(token.text for token in args))
        elif name == "endpoint":
            if not args:
                raise plugin.arg_error(option.name)
            if len(args) > 1:
                log.warning("plugin/kubernetes: Multiple endpoints have been deprecated, only the first specified "
                            "endpoint '%s' is used", args[0].text)
            values["endpoint"] = args[0].text
        elif name == "tls":
            if len(args) != 3:
                raise plugin.arg_error(last(option))
            values["tls"] = (args[0].text, args[1].text, args[2].text)
        elif name in ("labels", "namespace_labels"):
            if not args:
                raise plugin.arg_error(option.name)
            values[name] = _label_selector(plugin, option, "label" if name == "labels" else "namespace_label")
        elif name == "fallthrough":
            values["fallthrough"] = plugin.fallthrough(option)
        elif name == "ttl":
            ttl = plugin.atoi(plugin.one_arg(option))
            if not 0 <= ttl <= MAX_TTL:
                raise plugin.error(args[0], f"ttl must be in range [0, {MAX_TTL}]: {ttl}")
            values["ttl"] = ttl
        elif name == "ignore":
            if plugin.one_arg(option).text != "empty_service":
                raise plugin.error(args[0], f"unable to parse ignore value: '{args[0].text}'")
            values["ignore_empty_service"] = True
        elif name == "kubeconfig":
            if len(args) not in (1, 2):
                raise plugin.arg_error(last(option))
            values["kubeconfig"] = Path(args[0].text)
            values["context"] = args[1].text if len(args) == 2 else None
        elif name == "startup_timeout":
            token = plugin.one_arg(option)
            values["startup_timeout"] = plugin.duration(token, f"failed to parse startup_timeout: {token.text}, ")
        elif name == "multicluster":
            values["multicluster"] = _multicluster_zones(plugin, option, zones)
        elif name == "fixtures":  # our extension: manifests on disk instead of the API
            values["fixtures"] = context.directory / plugin.one_arg(option).text
        elif name == "watch_file":  # our extension: a recorded watch stream replayed on top of `fixtures`
            values["watch_file"] = context.directory / plugin.one_arg(option).text
        elif name == "dns_service":  # our extension: the Service whose cluster IPs answer ns.dns.<zone>
            namespace, _, service = plugin.one_arg(option).text.lower().partition("/")
            if not namespace or not service:
                raise plugin.error(args[0], f"dns_service must be NAMESPACE/NAME: {args[0].text}")
            values["dns_service"] = (namespace, service)
        else:
            raise plugin.unknown(option)
    if "namespaces" in values and "namespace_labels" in values:
        raise plugin.error(directive.name, "namespaces and namespace_labels cannot both be set")
    if "fixtures" in values and {"endpoint", "kubeconfig", "tls"} & values.keys():
        raise plugin.error(directive.name, "fixtures and endpoint/kubeconfig/tls cannot both be set")
    if "fixtures" in values and {"labels", "namespace_labels"} & values.keys():
        raise plugin.error(directive.name, "labels and namespace_labels are selectors the Kubernetes API applies: "
                                           "they need the API source, not fixtures")
    if "watch_file" in values and "fixtures" not in values:
        raise plugin.error(directive.name, "watch_file replays events on top of fixtures: set fixtures too")
    return KubernetesSettings(**values)  # type: ignore[arg-type]


def _multicluster_zones(plugin: Reader, option: Directive, zones: tuple[str, ...]) -> tuple[str, ...]:
    """`multicluster ZONES...`: each must be one of the plugin's zones, as CoreDNS requires.

    Without zones CoreDNS makes no zone multicluster (it takes them from an empty list, not the
    block's): accepted, as it starts there, with a warning that it does nothing.
    """
    if not option.args:
        log.warning("plugin/kubernetes: %s - multicluster without zones makes no zone multicluster",
                    option.name.location)
    multicluster: list[str] = []
    for token in option.args:
        for zone in plugin.zones((token,)):
            if zone not in zones:
                listed = " ".join(f"{z}." for z in zones)
                raise plugin.error(token, f"is not authoritative for the multicluster zone {zone}. "
                                          f"(authoritative zones: [{listed}])")
            multicluster.append(zone)
    return tuple(dict.fromkeys(multicluster))


def _label_selector(plugin: Reader, option: Directive, what: str) -> str:
    """The arguments joined by spaces, checked against Kubernetes' label selector grammar."""
    selector = " ".join(token.text for token in option.args)
    requirements = re.split(r",(?![^(]*\))", selector)
    for requirement in requirements:
        if not _REQUIREMENT.fullmatch(requirement):
            raise plugin.error(option.name, f"unable to parse {what} selector value: '{selector}': "
                                            f"invalid requirement '{requirement.strip()}'")
    return selector
