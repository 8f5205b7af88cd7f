"""The immutable, indexed view of the cluster that the resolver reads.

A snapshot is built by the registry and never changed afterwards: readers hold a reference and
never lock.  It keeps exactly the indexes the resolver needs, so every lookup is one dict access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dns_server.records import Port, Service

ServiceKey = tuple[str, str]  # (namespace, service name), lower case


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
class Snapshot:
    serial: int  # SOA serial: time of the last change, strictly increasing
    synced: bool  # every required source has delivered its first full listing
    namespaces: frozenset[str]
    services: Mapping[ServiceKey, ServiceEntry]
    reverse: Mapping[str, tuple[str, ...]]  # address -> names relative to `svc.<zone>` ("svc.ns", "ep.svc.ns")
    pod_ips: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (namespace, address) of running pods

    @staticmethod
    def empty(synced: bool = False) -> Snapshot:
        return Snapshot(serial=0, synced=synced, namespaces=frozenset(), services={}, reverse={})
