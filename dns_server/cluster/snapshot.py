"""The immutable, indexed view of the cluster that the resolver reads, and what changed between two.

A snapshot is built by the registry and never changed afterwards: readers hold a reference and
never lock.  It keeps exactly the indexes the resolver needs, so every lookup is one dict access.

With each snapshot the registry publishes a `Change`: which services, namespaces, pod addresses,
reverse names, services' external addresses and ServiceImports differ from the snapshot before.  Answers record
what they read as dependencies (the resolver's `Reads`); `invalidated(change)` is the one rule that
says which dependencies a change touches, so the answer table drops exactly the cached replies that
may differ and keeps every other one.  The SOA serial is not a dependency: cached negative answers get the new serial
patched in (answer_table.py).  Nor is a client's namespace (`pod_namespaces`, autopath's): answers that depend on
it are kept per namespace, which is looked up afresh for each query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping

from dns_server.cluster.records import Port, Service, ServiceImport
from dns_server.protocol.answer import Dependency
from dns_server.protocol.names import canonical_address

ServiceKey = tuple[str, str]  # (namespace, service name), lower case
PodAddress = tuple[str, str]  # (namespace, address) of a running pod


@dataclass(frozen=True, slots=True)
class ReadyEndpoint:
    """One ready address of a service, under the name DNS gives it."""

    name: str  # hostname, pod name or dashed address: the label under the service
    address: str
    ports: tuple[Port, ...]  # the ports of the EndpointSlice it came from


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    service: Service
    endpoints: tuple[ReadyEndpoint, ...]  # ready only, merged over slices, duplicates removed


@dataclass(frozen=True, slots=True)
class ClusterEndpoint:
    """One ready address of a ServiceImport in one cluster of the set."""

    cluster: str  # the multicluster.kubernetes.io/source-cluster of its slice
    name: str  # hostname, pod name or dashed address: the label under the cluster's
    address: str
    ports: tuple[Port, ...]


@dataclass(frozen=True, slots=True)
class ImportEntry:
    service_import: ServiceImport
    endpoints: tuple[ClusterEndpoint, ...]  # ready only, merged over every cluster's slices, duplicates removed


@dataclass(frozen=True, slots=True)
class Snapshot:
    serial: int  # SOA serial: the second of the last change (as CoreDNS), never decreasing
    synced: bool  # every required source has delivered its first full listing
    namespaces: frozenset[str]
    services: Mapping[ServiceKey, ServiceEntry]
    reverse: Mapping[str, tuple[str, ...]]  # address -> names relative to `svc.<zone>` ("svc.ns", "ep.svc.ns")
    # running pods' (namespace, address) pairs that `pod_namespaces` does not give: hostNetwork pods', and those
    # of another namespace than their address's claimant (nearly every pod is its address's claimant: one pair
    # held per pod would cost about 100 bytes each, 100 MB at a million pods)
    other_pod_ips: frozenset[PodAddress] = frozenset()
    # external address -> the services ("svc.ns") it belongs to (k8s_external's PTR); apart from `reverse`,
    # as the cluster zone must not answer PTR for addresses outside the cluster
    external: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # autopath: a client's address -> the namespace of the one pod it is taken to be (registry.claimant)
    pod_namespaces: Mapping[str, str] = field(default_factory=dict)
    imports: Mapping[ServiceKey, ImportEntry] = field(default_factory=dict)  # ServiceImports (multicluster)

    def pod_running(self, namespace: str, address: str) -> bool:
        """Whether a running pod of `namespace` has `address`."""
        return self.pod_namespaces.get(address) == namespace or (namespace, address) in self.other_pod_ips

    @staticmethod
    def empty(synced: bool) -> Snapshot:
        return Snapshot(serial=0, synced=synced, namespaces=frozenset(), services={}, reverse={})

    def client_namespace(self, address: str) -> str | None:
        """The namespace of the pod a client's address is taken for (autopath), None when it is no pod's."""
        return self.pod_namespaces.get(canonical_address(address))


# Dependencies: what an answer was read from.
def service_dependency(key: ServiceKey) -> Dependency:
    return ("service", *key)


def namespace_dependency(namespace: str) -> Dependency:
    return ("namespace", namespace)


def pod_dependency(key: PodAddress) -> Dependency:
    return ("pod", *key)


def address_dependency(address: str) -> Dependency:
    return ("address", address)


def external_dependency(address: str) -> Dependency:
    return ("external", address)


def import_dependency(key: ServiceKey) -> Dependency:
    return ("import", *key)


SYNCED: Dependency = ("synced",)  # a "not synced yet" answer
HOSTS: Dependency = ("hosts",)  # an answer from the hosts plugin's table


@dataclass(frozen=True, slots=True)
class Change:
    """What differs between a snapshot and the one before it (a new hosts table sets `hosts`)."""

    services: frozenset[ServiceKey] = frozenset()  # entries added, removed or different
    namespaces: frozenset[str] = frozenset()  # namespaces that appeared or disappeared
    pods: frozenset[PodAddress] = frozenset()  # running pod addresses that appeared or disappeared
    addresses: frozenset[str] = frozenset()  # reverse names that appeared, disappeared or changed
    external: frozenset[str] = frozenset()  # external addresses whose services changed
    imports: frozenset[ServiceKey] = frozenset()  # ServiceImport entries added, removed or different
    synced: bool = False  # the snapshot became synced
    hosts: bool = False
    replaced: bool = False  # whole kinds were replaced (a listing, a relist, a reload of the files)


def invalidated(change: Change) -> Iterator[Dependency]:
    """The dependencies whose answers a change may alter: exactly those the change touched.

    Yielded one by one: the first listing of a million pods touches two million of them.
    """
    yield from (service_dependency(key) for key in change.services)
    yield from (namespace_dependency(ns) for ns in change.namespaces)
    yield from (pod_dependency(key) for key in change.pods)
    yield from (address_dependency(address) for address in change.addresses)
    yield from (external_dependency(address) for address in change.external)
    yield from (import_dependency(key) for key in change.imports)
    if change.synced:
        yield SYNCED
    if change.hosts:
        yield HOSTS
