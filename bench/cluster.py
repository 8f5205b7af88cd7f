"""The benchmark cluster: one model, written as API objects, as kubectl's YAML, and as a zone file for NSD.

The default cluster (issue 2; deterministic for a seed):
- 50 namespaces `ns0` .. `ns49`;
- 10,000 ClusterIP services, 200 per namespace, `svc0` .. `svc199`, each with the named ports
  `http` (80/TCP) and `metrics` (9090/TCP), cluster IPs from 10.96.0.1 up;
- 1,000 headless services, 20 per namespace, `db0` .. `db19`, each with one EndpointSlice
  (labelled `kubernetes.io/service-name`) of 5 ready endpoints on the named port `postgres`
  (5432/TCP), pod IPs from 10.244.0.2 up.  Even-numbered ones are StatefulSet-style (endpoints
  carry a hostname, `db4-0`), odd ones Deployment-style (endpoints named by dashed address).

`build_cluster` takes other sizes, and two additions for the sync benchmark: `backed` gives every
ClusterIP service an EndpointSlice of 5 Deployment-style endpoints (10,000 services: 50,000
endpoints), and `pods` makes that many running pods, the endpoints' own first.

`api_objects` yields the objects as the API serves them (with `managed_fields`, the metadata
kube-apiserver adds and a client must parse and throw away); `write_fixtures` writes them as the
one block-style `kind: List` that `kubectl get ns,svc,endpointslices -A -o yaml` prints (keys
sorted, no managedFields), so the server's start-up parses what it parses on real output.

The zone file holds every record our server answers for A, AAAA and SRV questions about these
names (RFC 1035 master-file syntax, as NSD reads it): service A records, SRV records for every
named port and the bare-service form (weight 100/n, as our server and CoreDNS give), headless A
sets, the per-endpoint names SRV targets point at, SOA and NS at the apex, `dns-version` TXT.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

ZONE = "cluster.local"
TTL = 5  # our server's default TTL (CoreDNS's)
NAMESPACES = 50
CLUSTER_IP_SERVICES = 10_000
HEADLESS_SERVICES = 1_000
ENDPOINTS_PER_SLICE = 5
SERVICE_CIDR_START = ipaddress.IPv4Address("10.96.0.1")
POD_CIDR_START = ipaddress.IPv4Address("10.244.0.2")
NODE_CIDR_START = ipaddress.IPv4Address("192.168.0.10")
CLUSTER_IP_PORTS = (("http", 80, 8080), ("metrics", 9090, 9090))  # name, port, targetPort
HEADLESS_PORTS = (("postgres", 5432, 5432),)
NODES = 20
CREATED = "2024-05-02T09:14:07Z"
MANAGER = "endpointslice-controller.k8s.io"


@dataclass(frozen=True)
class Endpoint:
    address: str
    pod: str
    hostname: str  # "" for Deployment-style endpoints
    node: str
    ready: bool = True

    @property
    def label(self) -> str:
        """The name DNS gives the endpoint under its service."""
        return self.hostname or self.address.replace(".", "-")


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    ip: str  # "None" for a headless service, as the API writes it
    ports: tuple[tuple[str, int, int], ...]
    slice_name: str = ""  # "" when it has no EndpointSlice
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"

    @property
    def headless(self) -> bool:
        return self.ip == "None"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    address: str
    node: str
    owner: str  # the ReplicaSet or StatefulSet it belongs to


@dataclass(frozen=True)
class Cluster:
    namespaces: tuple[str, ...]
    services: tuple[Service, ...]  # ClusterIP
    headless: tuple[Service, ...]
    pods: tuple[Pod, ...]


def build_cluster(seed: int = 1, *, namespaces: int = NAMESPACES, services: int = CLUSTER_IP_SERVICES,
                  headless: int = HEADLESS_SERVICES, backed: bool = False, pods: int = 0) -> Cluster:
    """The benchmark cluster (the same for the same arguments)."""
    rng = random.Random(seed)
    names = tuple(f"ns{i}" for i in range(namespaces))
    addresses = (str(POD_CIDR_START + i) for i in range(1 << 20))
    headless_services = []
    per_namespace = max(1, headless // namespaces)
    for h in range(headless):
        namespace, name = names[h // per_namespace % namespaces], f"db{h % per_namespace}"
        stateful = h % 2 == 0
        endpoints = tuple(_endpoint(rng, name, e, next(addresses), stateful) for e in range(ENDPOINTS_PER_SLICE))
        headless_services.append(Service(namespace, name, "None", HEADLESS_PORTS, f"{name}-{_suffix(rng)}", endpoints))
    cluster_ip_services = []
    per_namespace = max(1, services // namespaces)
    for i in range(services):
        namespace, name = names[i // per_namespace % namespaces], f"svc{i % per_namespace}"
        endpoints = tuple(_endpoint(rng, name, e, next(addresses), False)
                          for e in range(ENDPOINTS_PER_SLICE)) if backed else ()
        cluster_ip_services.append(Service(namespace, name, str(SERVICE_CIDR_START + i), CLUSTER_IP_PORTS,
                                           f"{name}-{_suffix(rng)}" if backed else "", endpoints))
    every_pod = [Pod(s.namespace, e.pod, e.address, e.node, e.pod.rsplit("-", 1)[0])
                 for s in (*headless_services, *cluster_ip_services) for e in s.endpoints][:pods]
    for p in range(len(every_pod), pods):  # pods no service selects: jobs, daemons, ...
        namespace, owner = names[p % namespaces], f"worker{p % 97}-{_suffix(random.Random(p % 97))}"
        every_pod.append(Pod(namespace, f"{owner}-{_suffix(rng)}", next(addresses), f"node-{rng.randrange(NODES)}",
                             owner))
    return Cluster(names, tuple(cluster_ip_services), tuple(headless_services), tuple(every_pod))


# `--autopath` (run.py, churn.py): the load generator, at 127.0.0.1, is a running pod in a namespace of its own,
# so that autopath reads the client of every search-path miss (none is kept in the answer table) while no walk
# changes an answer: every miss is under another namespace's search domain, as NSD's and the checks' answers expect.
AUTOPATH_CLIENT = Pod("bench-client", "dnsperf-0", "127.0.0.1", "node-0", "dnsperf-5d8f7c9b4")


def _endpoint(rng: random.Random, service: str, index: int, address: str, stateful: bool) -> Endpoint:
    pod = f"{service}-{index}" if stateful else f"{service}-{_template(service)}-{_suffix(rng)}"
    return Endpoint(address, pod, pod if stateful else "", f"node-{rng.randrange(NODES)}")


def _template(service: str) -> str:
    """The pod-template hash of a Deployment's pods (stable per service name)."""
    return "".join(random.Random(service).choices(string.ascii_lowercase + string.digits, k=10))


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choices("bcdfghjklmnpqrstvwxz2456789", k=5))


# -- API objects -------------------------------------------------------------------------------------
def api_objects(cluster: Cluster, *, managed_fields: bool = True, kinds: Sequence[str] | None = None
                ) -> Iterator[dict[str, Any]]:
    """The cluster's objects (of `kinds`, default all) as the API returns them, namespaces first."""
    wanted = set(kinds or ("Namespace", "Service", "EndpointSlice", "Pod"))
    if "Namespace" in wanted:
        yield from (namespace_object(name) for name in cluster.namespaces)
    if "Service" in wanted:
        yield from (service_object(s, managed_fields) for s in (*cluster.services, *cluster.headless))
    if "EndpointSlice" in wanted:
        yield from (endpoint_slice_object(s, s.endpoints, managed_fields)
                    for s in (*cluster.headless, *cluster.services) if s.slice_name)
    if "Pod" in wanted:
        yield from (pod_object(p, managed_fields) for p in cluster.pods)


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"creationTimestamp": CREATED, "labels": {"kubernetes.io/metadata.name": name},
                         "name": name, "uid": _uid(name)},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def service_object(service: Service, managed_fields: bool = True) -> dict[str, Any]:
    """The Service; its cluster IP is `service.ip` (change it with dataclasses.replace)."""
    labels = {"app.kubernetes.io/name": service.name, "app.kubernetes.io/part-of": service.namespace}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(service.namespace, service.name, labels, "kubectl-client-side-apply",
                                  managed_fields),
            "spec": {"clusterIP": service.ip, "clusterIPs": [service.ip], "internalTrafficPolicy": "Cluster",
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": name, "port": port, "protocol": "TCP", "targetPort": target}
                               for name, port, target in service.ports],
                     "selector": {"app.kubernetes.io/name": service.name}, "sessionAffinity": "None",
                     "type": "ClusterIP"},
            "status": {"loadBalancer": {}}}


def endpoint_slice_object(service: Service, endpoints: Sequence[Endpoint], managed_fields: bool = True
                          ) -> dict[str, Any]:
    """The service's EndpointSlice holding `endpoints` (its own, or a changed set), as the controller writes it."""
    labels = {"endpointslice.kubernetes.io/managed-by": MANAGER, "kubernetes.io/service-name": service.name}
    if service.headless:
        labels["service.kubernetes.io/headless"] = ""
    metadata = _metadata(service.namespace, service.slice_name, labels, "kube-controller-manager", managed_fields)
    metadata.update(annotations={"endpoints.kubernetes.io/last-change-trigger-time": CREATED},
                    generateName=f"{service.name}-", ownerReferences=[{
                        "apiVersion": "v1", "blockOwnerDeletion": True, "controller": True, "kind": "Service",
                        "name": service.name, "uid": _uid(service.fqdn)}])
    return {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": metadata,
            "endpoints": [{"addresses": [e.address],
                           "conditions": {"ready": e.ready, "serving": e.ready, "terminating": False},
                           **({"hostname": e.hostname} if e.hostname else {}), "nodeName": e.node,
                           "targetRef": {"kind": "Pod", "name": e.pod, "namespace": service.namespace,
                                         "uid": _uid(f"{service.namespace}/{e.pod}")}}
                          for e in endpoints],
            "ports": [{"name": name, "port": target, "protocol": "TCP"} for name, _, target in service.ports]}


def pod_object(pod: Pod, managed_fields: bool = True) -> dict[str, Any]:
    """A running pod with one container, about the size of a small real one (1.5 kB of JSON)."""
    labels = {"app.kubernetes.io/name": pod.owner.rsplit("-", 1)[0], "pod-template-hash": pod.owner.rsplit("-", 1)[-1]}
    metadata = _metadata(pod.namespace, pod.name, labels, "kubelet", managed_fields)
    metadata.update(generateName=f"{pod.owner}-", ownerReferences=[{
        "apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True, "kind": "ReplicaSet",
        "name": pod.owner, "uid": _uid(f"{pod.namespace}/{pod.owner}")}])
    node = int(pod.node.rsplit("-", 1)[1])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [{"image": f"registry.example.com/{pod.owner.rsplit('-', 1)[0]}:1.4.2",
                                     "imagePullPolicy": "IfNotPresent", "name": "app",
                                     "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                     "terminationMessagePath": "/dev/termination-log",
                                     "terminationMessagePolicy": "File"}],
                     "dnsPolicy": "ClusterFirst", "nodeName": pod.node, "restartPolicy": "Always",
                     "schedulerName": "default-scheduler", "serviceAccountName": "default",
                     "terminationGracePeriodSeconds": 30},
            "status": {"conditions": [{"lastProbeTime": None, "lastTransitionTime": CREATED, "status": "True",
                                       "type": condition}
                                      for condition in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                       "containerStatuses": [{"containerID": f"containerd://{_uid(pod.name).replace('-', '')}",
                                              "image": "registry.example.com/app:1.4.2", "name": "app",
                                              "ready": True, "restartCount": 0, "started": True,
                                              "state": {"running": {"startedAt": CREATED}}}],
                       "hostIP": str(NODE_CIDR_START + node), "phase": "Running", "podIP": pod.address,
                       "podIPs": [{"ip": pod.address}], "qosClass": "Burstable", "startTime": CREATED}}


def _metadata(namespace: str, name: str, labels: dict[str, str], manager: str, managed_fields: bool
              ) -> dict[str, Any]:
    metadata: dict[str, Any] = {"creationTimestamp": CREATED, "labels": labels, "name": name,
                                "namespace": namespace, "uid": _uid(f"{namespace}/{name}")}
    if managed_fields:
        metadata["managedFields"] = [{"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": manager,
                                      "operation": "Update", "time": CREATED,
                                      "fieldsV1": {"f:metadata": {"f:labels": {".": {}, **{f"f:{k}": {}
                                                                                          for k in labels}}}}}]
    return metadata


def _uid(seed: str) -> str:
    """A stable uid for an object, shaped like the API server's (a UUID's layout)."""
    h = hashlib.md5(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- kubectl's YAML ----------------------------------------------------------------------------------
def write_fixtures(cluster: Cluster, directory: Path) -> Path:
    """Write namespaces, services and slices as one `kubectl get -A -o yaml` List into `directory`; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.yaml"
    version = iter(range(1000, 10_000_000))
    with path.open("w") as out:
        out.write("apiVersion: v1\nitems:\n")
        for obj in api_objects(cluster, managed_fields=False, kinds=("Namespace", "Service", "EndpointSlice")):
            obj["metadata"]["resourceVersion"] = str(next(version))
            out.writelines(_yaml_item(obj))
        out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
    return path


def _yaml_item(obj: dict[str, Any]) -> list[str]:
    """One object as an item of a block-style YAML list, keys sorted, as kubectl prints it."""
    lines = list(_yaml_block(obj, "  "))
    lines[0] = "- " + lines[0][2:]
    return lines


def _yaml_block(value: dict[str, Any] | list[Any], indent: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, (dict, list)) and item:
                yield f"{indent}{_yaml_scalar(key)}:\n"
                yield from _yaml_block(item, indent + "  " if isinstance(item, dict) else indent)
            else:
                yield f"{indent}{_yaml_scalar(key)}: {_yaml_scalar(item)}\n"
        return
    for item in value:
        if isinstance(item, dict) and item:
            lines = list(_yaml_block(item, indent + "  "))
            lines[0] = f"{indent}- {lines[0][len(indent) + 2:]}"
            yield from lines
        else:
            yield f"{indent}- {_yaml_scalar(item)}\n"


_PLAIN = re.compile(r"[A-Za-z][\w./-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}  # YAML 1.1 booleans and null


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED else json.dumps(text)


# -- zone file ---------------------------------------------------------------------------------------
def write_zone(cluster: Cluster, path: Path, ns_address: str = "127.0.0.1") -> Path:
    """Write the cluster as a `cluster.local` zone file for NSD; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.writelines(_zone_lines(cluster, ns_address))
    return path


def _zone_lines(cluster: Cluster, ns_address: str) -> Iterator[str]:
    # SOA as our server gives it: mname ns.dns.Z, rname hostmaster.Z, timers as CoreDNS, minimum = TTL
    yield f"$ORIGIN {ZONE}.\n$TTL {TTL}\n"
    yield f"@ {TTL} IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {TTL}\n"
    yield f"@ IN NS ns.dns.{ZONE}.\nns.dns IN A {ns_address}\n"
    yield 'dns-version 28800 IN TXT "1.1.0"\n'
    for svc in cluster.services:
        owner = f"{svc.name}.{svc.namespace}.svc"
        weight = 100 // len(svc.ports)
        yield f"{owner} IN A {svc.ip}\n"
        for name, port, _ in svc.ports:
            yield f"{owner} IN SRV 0 {weight} {port} {svc.fqdn}.\n"
            yield f"_{name}._tcp.{owner} IN SRV 0 100 {port} {svc.fqdn}.\n"
    for hl in cluster.headless:
        owner = f"{hl.name}.{hl.namespace}.svc"
        ready = [e for e in hl.endpoints if e.ready]
        for ep in ready:
            yield f"{owner} IN A {ep.address}\n{ep.label}.{owner} IN A {ep.address}\n"
            for name, port, _ in hl.ports:
                yield f"{owner} IN SRV 0 {100 // (len(ready) * len(hl.ports))} {port} {ep.label}.{hl.fqdn}.\n"
                yield f"_{name}._tcp.{owner} IN SRV 0 {100 // len(ready)} {port} {ep.label}.{hl.fqdn}.\n"
