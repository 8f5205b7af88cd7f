"""Slim, immutable records of the Kubernetes objects DNS needs, and their converters.

Every source (fixture files, the Kubernetes watch, a recorded stream) turns API objects — plain
dicts in the API's JSON shape, exactly what `kubectl get -o yaml/json` prints — into these values
with the converters below, so "did anything DNS-visible change?" is `==`.  Only what DNS reads is
kept: memory at a large cluster depends on it.

A converter raises `MalformedObject` with a reason a person can act on; callers add the file or
stream the object came from.

A list page from the API is decoded by `sources/pages.py` into only the fields these converters read.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from dns_server.errors import MalformedInput
from dns_server.protocol.names import valid_domain

NAMESPACE = "Namespace"
SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
POD = "Pod"
KINDS = (NAMESPACE, SERVICE, ENDPOINT_SLICE, POD)
# The Multi-Cluster Services API (multicluster.x-k8s.io/v1alpha1), read only with the `multicluster` option.
# An EndpointSlice labelled for a ServiceImport is kept under a kind of its own: it describes endpoints in
# the cluster set, never a local service's.
SERVICE_IMPORT = "ServiceImport"
MULTICLUSTER_SLICE = "MulticlusterEndpointSlice"
MULTICLUSTER_KINDS = (SERVICE_IMPORT, MULTICLUSTER_SLICE)
API_KINDS = (*KINDS, SERVICE_IMPORT)  # the `kind` of every API object a source reads

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller
IMPORT_NAME_LABEL = "multicluster.kubernetes.io/service-name"  # the ServiceImport a slice belongs to
SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"  # the cluster its endpoints are in
TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed", "Unknown"})


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}", re.ASCII)
# What a JSON object may arrive as: a dict, checked first (an ABC's isinstance is ten times slower), or any mapping.
_OBJECT = (dict, Mapping)


class MalformedObject(MalformedInput):
    """An API object that cannot be read: the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Port:
    name: str  # "" for an unnamed port
    protocol: str  # upper case as in the API: TCP, UDP, SCTP
    port: int


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (NAMESPACE, "", self.name)


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]  # normalised addresses; empty for headless and ExternalName
    headless: bool
    external_name: str  # "" unless type ExternalName; lower case, no trailing dot
    ports: tuple[Port, ...]
    # What reaches it from outside the cluster (the k8s_external plugin): spec.externalIPs, then each
    # load-balancer ingress ip, distinct and normalised; and, only when there is none of those, the first
    # ingress hostname (lower case, no trailing dot).  Most services have neither: the shared empty values.
    external_ips: tuple[str, ...] = ()
    external_hostname: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (SERVICE, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]  # normalised
    ready: bool
    hostname: str  # "" if unset
    pod_name: str  # targetRef name when it is a Pod, else ""


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str  # from the kubernetes.io/service-name label; "" if absent
    endpoints: tuple[Endpoint, ...]
    ports: tuple[Port, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (ENDPOINT_SLICE, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...]  # normalised status.podIPs (or status.podIP)
    running: bool  # phase is not terminal (Succeeded, Failed, Unknown)
    # for autopath's address -> namespace index (registry.py decides between pods claiming one address)
    host_network: bool = False  # spec.hostNetwork: its address is the node's, shared by other pods
    terminating: bool = False  # metadata.deletionTimestamp is set
    created: int = 0  # metadata.creationTimestamp, in seconds since the epoch (0 if unset)

    @property
    def key(self) -> tuple[str, str, str]:
        return (POD, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ServiceImport:
    """A service of the cluster set (MCS API): ClusterSetIP with its `ips`, or headless."""

    namespace: str
    name: str
    ips: tuple[str, ...]  # normalised spec.ips; empty for a headless import
    headless: bool  # spec.type Headless
    ports: tuple[Port, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (SERVICE_IMPORT, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class MulticlusterSlice:
    """An EndpointSlice of a ServiceImport: endpoints of one cluster of the set."""

    namespace: str
    name: str
    service: str  # from the multicluster.kubernetes.io/service-name label
    cluster: str  # from the multicluster.kubernetes.io/source-cluster label; "" if absent
    endpoints: tuple[Endpoint, ...]
    ports: tuple[Port, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (MULTICLUSTER_SLICE, self.namespace, self.name)


Record = Namespace | Service | EndpointSlice | Pod | ServiceImport | MulticlusterSlice
Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for Namespace objects


def normalize_ip(text: str) -> str:
    """Canonical text of an address (`fd00:0::1` -> `fd00::1`); raises ValueError."""
    if _CANONICAL_IPV4.fullmatch(text):
        return text  # IPv4 already in canonical form: most addresses, at a tenth of ipaddress's cost
    return str(ipaddress.ip_address(text.strip()))


def convert(obj: Mapping[str, Any]) -> Record | None:
    """Convert one API object; None for kinds DNS does not read."""
    kind = obj.get("kind")
    converter = _CONVERTERS.get(kind) if isinstance(kind, str) else None
    if converter is None:
        return None
    return converter(obj)


def key_of(obj: Mapping[str, Any]) -> Key | None:
    """The registry key of an API object (even a malformed one), None if it has none.

    Spelled as the converted record spells its `key` (namespace and name in lower case: DNS names
    are case-insensitive), so a Remove, or the last good version of a malformed object, finds it.
    """
    kind = obj.get("kind")
    meta = obj.get("metadata")
    if kind not in API_KINDS or not isinstance(meta, _OBJECT) or not isinstance(meta.get("name"), str):
        return None
    namespace = "" if kind == NAMESPACE else str(meta.get("namespace") or "default").lower()
    if kind == ENDPOINT_SLICE and _import_labels(meta.get("labels")) is not None:
        kind = MULTICLUSTER_SLICE
    return (str(kind), namespace, meta["name"].lower())


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind ns/name` for log lines, whatever shape the object has."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), _OBJECT) else {}
    assert isinstance(meta, _OBJECT)
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')} {ns}/{name}" if ns else f"{obj.get('kind', '?')} {name}"


def _meta(obj: Mapping[str, Any], namespaced: bool) -> tuple[str, str]:
    meta = _metadata(obj)
    return names_of(meta.get("name"), meta.get("namespace") if namespaced else None, namespaced)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, _OBJECT):
        raise MalformedObject("metadata is missing")
    return meta


def names_of(name: Any, namespace: Any, namespaced: bool = True) -> tuple[str, str]:
    """(namespace, name) of metadata.namespace and metadata.name, lower case; namespace "" if not `namespaced`."""
    if not isinstance(name, str) or not name:
        raise MalformedObject("metadata.name is missing")
    if not namespaced:
        return "", name.lower()
    namespace = namespace or "default"
    if not isinstance(namespace, str):
        raise MalformedObject("metadata.namespace is not a string")
    return sys.intern(namespace.lower()), name.lower()  # a namespace's name is held once, not once per object


def _section(obj: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = obj.get(field)
    if value is None:
        return {}
    if not isinstance(value, _OBJECT):
        raise MalformedObject(f"{field} is not an object")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedObject(f"{field} is not a list")
    return value


def _ip(text: Any, field: str) -> str:
    if not isinstance(text, str):
        raise MalformedObject(f"{field} is not a string")
    try:
        return normalize_ip(text)
    except ValueError:
        raise MalformedObject(f"{field} {text!r} is not an IP address") from None


def _ips(addresses: Sequence[Any], field: str) -> tuple[str, ...]:
    """Normalised addresses of the list at `field`; raises MalformedObject naming the first that is none.

    An item's field name is spelt only for a malformed one, not for each address of a million pods.
    """
    try:
        return tuple(map(normalize_ip, addresses))  # TypeError: fullmatch of what is not a string
    except (TypeError, ValueError):
        return tuple(_ip(address, f"{field}[{i}]") for i, address in enumerate(addresses))


def _ports(items: Any, field: str, number_optional: bool = False) -> tuple[Port, ...]:
    ports = []
    for i, item in enumerate(_list(items, field)):
        if not isinstance(item, _OBJECT):
            raise MalformedObject(f"{field}[{i}] is not an object")
        number = item.get("port")
        if number is None and number_optional:
            continue  # an EndpointSlice port may leave the number unset ("all ports")
        ports.append(port_record(number, item.get("name"), item.get("protocol"), f"{field}[{i}]"))
    return tuple(ports)


def port_record(number: Any, name: Any, protocol: Any, field: str) -> Port:
    """A Port of the fields of the port at `field`, however they were decoded; raises MalformedObject."""
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
        raise MalformedObject(f"{field}.port {number!r} is not a port number")
    name = name or ""
    protocol = protocol or "TCP"
    if not isinstance(name, str) or not isinstance(protocol, str):
        raise MalformedObject(f"{field} name or protocol is not a string")
    return Port(sys.intern(name.lower()), sys.intern(protocol.upper()), number)


def namespace_from_api(obj: Mapping[str, Any]) -> Namespace:
    _, name = _meta(obj, namespaced=False)
    return Namespace(name)


def service_from_api(obj: Mapping[str, Any]) -> Service:
    namespace, name = _meta(obj, namespaced=True)
    spec = _section(obj, "spec")
    kind = spec.get("type") or "ClusterIP"
    external_ips, external_hostname = _external(spec, _section(obj, "status"))
    if kind == "ExternalName":
        target = spec.get("externalName")
        if not isinstance(target, str) or not target.strip(". "):
            raise MalformedObject("spec.externalName is missing for an ExternalName service")
        return Service(namespace, name, (), False, target.strip().rstrip(".").lower(),
                       _ports(spec.get("ports"), "spec.ports"), external_ips, external_hostname)
    ips = _list(spec.get("clusterIPs"), "spec.clusterIPs") or (
        [spec["clusterIP"]] if spec.get("clusterIP") else [])
    headless = not ips or ips[0] == "None"
    cluster_ips = () if headless else _ips(ips, "spec.clusterIPs")
    return Service(namespace, name, cluster_ips, headless, "", _ports(spec.get("ports"), "spec.ports"),
                   external_ips, external_hostname)


def _external(spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """A service's external addresses and, when it has none, its first load-balancer ingress hostname.

    The order is CoreDNS's (spec.externalIPs, then status.loadBalancer.ingress, an entry's ip before its
    hostname).  One name cannot be both a CNAME and addresses, so a hostname counts only without any ip.
    """
    ips = list(_ips(_list(spec.get("externalIPs"), "spec.externalIPs"), "spec.externalIPs"))
    hostnames: list[str] = []
    load_balancer = status.get("loadBalancer") or {}
    if not isinstance(load_balancer, _OBJECT):
        raise MalformedObject("status.loadBalancer is not an object")
    field = "status.loadBalancer.ingress"
    for i, ingress in enumerate(_list(load_balancer.get("ingress"), field)):
        if not isinstance(ingress, _OBJECT):
            raise MalformedObject(f"{field}[{i}] is not an object")
        if ingress.get("ip"):
            ips.append(_ip(ingress["ip"], f"{field}[{i}].ip"))
        elif ingress.get("hostname"):
            hostnames.append(_hostname(ingress["hostname"], f"{field}[{i}].hostname"))
    if ips:
        return tuple(dict.fromkeys(ips)), ""
    return (), hostnames[0] if hostnames else ""


def _hostname(text: Any, field: str) -> str:
    if not isinstance(text, str):
        raise MalformedObject(f"{field} is not a string")
    name = text.strip().rstrip(".").lower()
    if not name or not valid_domain(name) or not name.isascii():
        raise MalformedObject(f"{field} {text!r} is not a host name")
    return name


def endpoint_slice_from_api(obj: Mapping[str, Any]) -> EndpointSlice | MulticlusterSlice:
    """A local service's slice, or (labelled multicluster.kubernetes.io/service-name) a ServiceImport's."""
    namespace, name = _meta(obj, namespaced=True)
    return slice_record(namespace, name, obj["metadata"].get("labels"), _endpoints(obj),
                        _ports(obj.get("ports"), "ports", number_optional=True))


def slice_record(namespace: str, name: str, labels: Any, endpoints: tuple[Endpoint, ...],
                 ports: tuple[Port, ...]) -> EndpointSlice | MulticlusterSlice:
    """A slice of its parts, however they were decoded: from an API object's dict (`endpoint_slice_from_api`)
    or a list page's struct (`sources/pages.py`)."""
    imported = _import_labels(labels)
    if imported is not None:
        return MulticlusterSlice(namespace, name, imported[0], imported[1], endpoints, ports)
    service = labels.get(SERVICE_NAME_LABEL, "") if isinstance(labels, _OBJECT) else ""
    return EndpointSlice(namespace, name, str(service).lower(), endpoints, ports)


def _import_labels(labels: Any) -> tuple[str, str] | None:
    """(service, cluster) of a slice labelled for a ServiceImport; None for a local slice."""
    if not isinstance(labels, _OBJECT) or IMPORT_NAME_LABEL not in labels:
        return None
    return str(labels[IMPORT_NAME_LABEL]).lower(), str(labels.get(SOURCE_CLUSTER_LABEL) or "").lower()


def _endpoints(obj: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    address_type = obj.get("addressType", "IPv4")
    endpoints = []
    for i, item in enumerate(_list(obj.get("endpoints"), "endpoints")):
        if not isinstance(item, _OBJECT):
            raise MalformedObject(f"endpoints[{i}] is not an object")
        if address_type == "FQDN":
            continue  # FQDN endpoints are deprecated and never served by cluster DNS
        addresses = _list(item.get("addresses"), f"endpoints[{i}].addresses")
        conditions = item.get("conditions") or {}
        ready = conditions.get("ready") if isinstance(conditions, _OBJECT) else None
        target = item.get("targetRef") or {}
        pod_name = target.get("name", "") if isinstance(target, _OBJECT) and target.get("kind") == "Pod" else ""
        endpoints.append(endpoint_record(addresses, ready, item.get("hostname"), pod_name, f"endpoints[{i}]"))
    return tuple(endpoints)


def endpoint_record(addresses: Sequence[Any], ready: Any, hostname: Any, pod_name: Any, field: str) -> Endpoint:
    """An Endpoint of the fields of the slice's endpoint at `field`, however they were decoded."""
    return Endpoint(_ips(addresses, f"{field}.addresses"), ready is not False, str(hostname or "").lower(),
                    str(pod_name).lower())


def service_import_from_api(obj: Mapping[str, Any]) -> ServiceImport:
    namespace, name = _meta(obj, namespaced=True)
    spec = _section(obj, "spec")
    kind = spec.get("type") or "ClusterSetIP"
    if kind not in ("ClusterSetIP", "Headless"):
        raise MalformedObject(f"spec.type {kind!r} is neither ClusterSetIP nor Headless")
    headless = kind == "Headless"
    listed = () if headless else _list(spec.get("ips"), "spec.ips")
    ips = _ips(listed, "spec.ips")
    return ServiceImport(namespace, name, ips, headless, _ports(spec.get("ports"), "spec.ports"))


def pod_from_api(obj: Mapping[str, Any]) -> Pod:
    meta = _metadata(obj)
    status = _section(obj, "status")
    addresses = [entry.get("ip") if isinstance(entry, _OBJECT) else entry
                 for entry in _list(status.get("podIPs"), "status.podIPs")]
    if not addresses and status.get("podIP"):
        addresses = [status["podIP"]]
    return pod_record(meta.get("name"), meta.get("namespace"), addresses, status.get("phase"),
                      _section(obj, "spec").get("hostNetwork"), meta.get("deletionTimestamp"),
                      meta.get("creationTimestamp"))


def pod_record(name: Any, namespace: Any, addresses: Sequence[Any], phase: Any, host_network: Any,
               deletion: Any, creation: Any) -> Pod:
    """A Pod from the fields DNS reads of it (status.podIPs, or status.podIP, as `addresses`), however
    they were decoded: from an API object's dict (`pod_from_api`) or a list page's struct (`sources/pages.py`)."""
    namespace, name = names_of(name, namespace)
    ips = _ips(addresses, "status.podIPs")
    if phase is not None and not isinstance(phase, str):
        raise MalformedObject("status.phase is not a string")
    host_network = host_network or False
    if not isinstance(host_network, bool):
        raise MalformedObject("spec.hostNetwork is not a boolean")
    return Pod(namespace, name, ips, phase not in TERMINAL_POD_PHASES, host_network, deletion is not None,
               _timestamp(creation))


def _timestamp(value: Any) -> int:
    """An RFC 3339 timestamp of the API (`2024-05-01T10:00:00Z`) in seconds; 0 when unset."""
    if value is None:
        return 0
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except (ValueError, OverflowError, OSError):
        raise MalformedObject(f"metadata.creationTimestamp is not a time: {value!r}") from None


_CONVERTERS: dict[str, Callable[[Mapping[str, Any]], Record]] = {
    NAMESPACE: namespace_from_api,
    SERVICE: service_from_api,
    ENDPOINT_SLICE: endpoint_slice_from_api,
    POD: pod_from_api,
    SERVICE_IMPORT: service_import_from_api,
}
