"""The benchmark cluster, written two ways: Kubernetes manifests for our server, a zone file for NSD.

The cluster (deterministic; every figure below is a constant here):
- 50 namespaces `ns0` .. `ns49`;
- 10,000 ClusterIP services, 200 per namespace, `svc0` .. `svc199`, each with the named ports
  `http` (80/TCP) and `metrics` (9090/TCP), cluster IPs from 10.96.0.1 up;
- 1,000 headless services, 20 per namespace, `db0` .. `db19`, each with one EndpointSlice
  (labelled `kubernetes.io/service-name`) of 5 ready endpoints on the named port `postgres`
  (5432/TCP), pod IPs from 10.244.0.2 up.  Even-numbered ones are StatefulSet-style (endpoints
  carry a hostname, `db4-0`), odd ones Deployment-style (endpoints named by dashed address).

The manifests are what `kubectl get ns,svc,endpointslices -A -o yaml` prints for such a cluster:
one `kind: List`, block-style YAML, with the metadata, spec and status fields kubectl shows (so
parsing costs what it costs on real output).  Pods are left out: nothing in the query mix reads
them (pod records are answered in `insecure` mode from the name alone).

The zone file holds every record our server answers for A, AAAA and SRV questions about these
names (RFC 1035 master-file syntax, as NSD reads it): service A records, SRV records for every
named port and the bare-service form (weight 100/n, as our server and CoreDNS give), headless A
sets, per-endpoint A records, the SOA and NS at the apex and `dns-version` TXT.
"""

from __future__ import annotations

import ipaddress
import random
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

ZONE = "cluster.local"
TTL = 5  # our server's default TTL (CoreDNS's)
NAMESPACES = 50
CLUSTER_IP_SERVICES = 10_000
HEADLESS_SERVICES = 1_000
ENDPOINTS_PER_HEADLESS = 5
SERVICE_CIDR_START = ipaddress.IPv4Address("10.96.0.1")
POD_CIDR_START = ipaddress.IPv4Address("10.244.0.2")
CLUSTER_IP_PORTS = (("http", 80, 8080), ("metrics", 9090, 9090))  # name, port, targetPort
HEADLESS_PORT = ("postgres", 5432)
NODES = 20
CREATED = "2024-05-02T09:14:07Z"


@dataclass(frozen=True)
class ClusterIPService:
    namespace: str
    name: str
    ip: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"


@dataclass(frozen=True)
class Endpoint:
    address: str
    pod: str
    hostname: str  # "" for Deployment-style endpoints
    node: str

    @property
    def label(self) -> str:
        """The name DNS gives the endpoint under its service."""
        return self.hostname or self.address.replace(".", "-")


@dataclass(frozen=True)
class HeadlessService:
    namespace: str
    name: str
    slice_name: str
    endpoints: tuple[Endpoint, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"


@dataclass(frozen=True)
class Cluster:
    namespaces: tuple[str, ...]
    services: tuple[ClusterIPService, ...]
    headless: tuple[HeadlessService, ...]


def build_cluster(seed: int = 1) -> Cluster:
    """The benchmark cluster (the same for the same seed)."""
    rng = random.Random(seed)
    namespaces = tuple(f"ns{i}" for i in range(NAMESPACES))
    per_namespace = CLUSTER_IP_SERVICES // NAMESPACES
    services = tuple(
        ClusterIPService(namespaces[i // per_namespace], f"svc{i % per_namespace}", str(SERVICE_CIDR_START + i))
        for i in range(CLUSTER_IP_SERVICES))
    headless_per_namespace = HEADLESS_SERVICES // NAMESPACES
    headless = []
    for h in range(HEADLESS_SERVICES):
        namespace = namespaces[h // headless_per_namespace]
        name = f"db{h % headless_per_namespace}"
        stateful = h % 2 == 0
        template = "".join(rng.choices(string.ascii_lowercase + string.digits, k=10))
        endpoints = []
        for e in range(ENDPOINTS_PER_HEADLESS):
            address = str(POD_CIDR_START + h * ENDPOINTS_PER_HEADLESS + e)
            pod = f"{name}-{e}" if stateful else f"{name}-{template}-{_suffix(rng)}"
            endpoints.append(Endpoint(address, pod, pod if stateful else "", f"node-{rng.randrange(NODES)}"))
        headless.append(HeadlessService(namespace, name, f"{name}-{_suffix(rng)}", tuple(endpoints)))
    return Cluster(namespaces, services, tuple(headless))


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choices("bcdfghjklmnpqrstvwxz2456789", k=5))


# -- manifests ---------------------------------------------------------------------------------------
def write_fixtures(cluster: Cluster, directory: Path) -> Path:
    """Write the cluster as one `kubectl get -A -o yaml` List into `directory`; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.yaml"
    with path.open("w") as out:
        out.write("apiVersion: v1\nitems:\n")
        for chunk in _manifest_items(cluster):
            out.write(chunk)
        out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
    return path


def _manifest_items(cluster: Cluster) -> Iterator[str]:
    version = iter(range(1000, 10_000_000))
    for namespace in cluster.namespaces:
        yield f"""- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "{CREATED}"
    labels:
      kubernetes.io/metadata.name: {namespace}
    name: {namespace}
    resourceVersion: "{next(version)}"
    uid: {_uid(namespace)}
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
"""
    for svc in cluster.services:
        ports = "".join(f"""    - name: {name}
      port: {port}
      protocol: TCP
      targetPort: {target}
""" for name, port, target in CLUSTER_IP_PORTS)
        yield f"""- apiVersion: v1
  kind: Service
  metadata:
    creationTimestamp: "{CREATED}"
    labels:
      app.kubernetes.io/name: {svc.name}
      app.kubernetes.io/part-of: {svc.namespace}
    name: {svc.name}
    namespace: {svc.namespace}
    resourceVersion: "{next(version)}"
    uid: {_uid(svc.fqdn)}
  spec:
    clusterIP: {svc.ip}
    clusterIPs:
    - {svc.ip}
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
{ports}    selector:
      app.kubernetes.io/name: {svc.name}
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {{}}
"""
    port_name, port = HEADLESS_PORT
    for hl in cluster.headless:
        yield f"""- apiVersion: v1
  kind: Service
  metadata:
    creationTimestamp: "{CREATED}"
    labels:
      app.kubernetes.io/name: {hl.name}
    name: {hl.name}
    namespace: {hl.namespace}
    resourceVersion: "{next(version)}"
    uid: {_uid(hl.fqdn)}
  spec:
    clusterIP: None
    clusterIPs:
    - None
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
    - name: {port_name}
      port: {port}
      protocol: TCP
      targetPort: {port}
    selector:
      app.kubernetes.io/name: {hl.name}
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {{}}
"""
    for hl in cluster.headless:
        endpoints = "".join(f"""  - addresses:
    - {ep.address}
    conditions:
      ready: true
      serving: true
      terminating: false
{f"    hostname: {ep.hostname}{chr(10)}" if ep.hostname else ""}    nodeName: {ep.node}
    targetRef:
      kind: Pod
      name: {ep.pod}
      namespace: {hl.namespace}
      uid: {_uid(hl.namespace + "/" + ep.pod)}
""" for ep in hl.endpoints)
        yield f"""- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
{endpoints}  kind: EndpointSlice
  metadata:
    annotations:
      endpoints.kubernetes.io/last-change-trigger-time: "{CREATED}"
    creationTimestamp: "{CREATED}"
    generateName: {hl.name}-
    generation: 1
    labels:
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: {hl.name}
      service.kubernetes.io/headless: ""
    name: {hl.slice_name}
    namespace: {hl.namespace}
    ownerReferences:
    - apiVersion: v1
      blockOwnerDeletion: true
      controller: true
      kind: Service
      name: {hl.name}
      uid: {_uid(hl.fqdn)}
    resourceVersion: "{next(version)}"
    uid: {_uid(hl.slice_name + hl.namespace)}
  ports:
  - name: {port_name}
    port: {port}
    protocol: TCP
"""


def _uid(seed: str) -> str:
    """A stable uid for an object, shaped like the API server's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


# -- zone file ---------------------------------------------------------------------------------------
def write_zone(cluster: Cluster, path: Path, ns_address: str = "127.0.0.1") -> Path:
    """Write the cluster as a `cluster.local` zone file for NSD; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        _write_zone(cluster, out, ns_address)
    return path


def _write_zone(cluster: Cluster, out: TextIO, ns_address: str) -> None:
    # SOA as our server gives it: mname ns.dns.Z, rname hostmaster.Z, timers as CoreDNS, minimum = TTL
    out.write(f"$ORIGIN {ZONE}.\n$TTL {TTL}\n")
    out.write(f"@ {TTL} IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {TTL}\n")
    out.write(f"@ IN NS ns.dns.{ZONE}.\n")
    out.write(f"ns.dns IN A {ns_address}\n")
    out.write('dns-version 28800 IN TXT "1.1.0"\n')
    weight = 100 // len(CLUSTER_IP_PORTS)
    for svc in cluster.services:
        owner = f"{svc.name}.{svc.namespace}.svc"
        out.write(f"{owner} IN A {svc.ip}\n")
        for name, port, _ in CLUSTER_IP_PORTS:
            out.write(f"{owner} IN SRV 0 {weight} {port} {svc.fqdn}.\n")
            out.write(f"_{name}._tcp.{owner} IN SRV 0 100 {port} {svc.fqdn}.\n")
    port_name, port = HEADLESS_PORT
    for hl in cluster.headless:
        owner = f"{hl.name}.{hl.namespace}.svc"
        weight = 100 // len(hl.endpoints)
        for ep in hl.endpoints:
            out.write(f"{owner} IN A {ep.address}\n")
            out.write(f"{ep.label}.{owner} IN A {ep.address}\n")
            out.write(f"{owner} IN SRV 0 {weight} {port} {ep.label}.{hl.fqdn}.\n")
            out.write(f"_{port_name}._tcp.{owner} IN SRV 0 {weight} {port} {ep.label}.{hl.fqdn}.\n")

