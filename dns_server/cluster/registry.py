"""The single writer of cluster state: applies source updates and publishes snapshots.

Sources (fixture files, the Kubernetes watch, a recorded stream) only produce `Update` values;
`Registry.apply` folds a batch of them into its private state and publishes one new `Snapshot`
with one assignment, together with the `Change` that says what differs from the snapshot before
(the answer table drops only the answers that change touches).  Readers never see half an update.  An optional scope (`dns_server.cluster.scope`)
filters every batch first, so each source honours `--namespaces` and `--namespace-labels` alike.

With worker processes (dns_server.supervisor), the supervisor's registry has a `journal`: every
batch, as given and with its time, is handed to it under the lock, so that copies of the registry
in the workers apply the same batches in the same order and reach the same state.

Theory of operation: the registry keeps every record by key, plus the derived indexes a snapshot
exposes (service entries, reverse names, pod addresses, services' external addresses, and the
ServiceImports of the `multicluster` option).  A batch marks the services and imports it touches
dirty; only those entries are rebuilt, in copies of the index dicts, so a burst of watch events on
a large cluster costs a few dict copies, not a rebuild of everything.  A ServiceImport's entry is
built from its own slices only (those labelled multicluster.kubernetes.io/service-name), a
Service's from the others: neither zone ever sees the other's endpoints.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    KINDS,
    MULTICLUSTER_SLICE,
    NAMESPACE,
    POD,
    SERVICE,
    SERVICE_IMPORT,
    EndpointSlice,
    Key,
    MulticlusterSlice,
    Pod,
    Record,
    Service,
    ServiceImport,
)
from dns_server.cluster.snapshot import (
    Change,
    ClusterEndpoint,
    ImportEntry,
    PodAddress,
    ReadyEndpoint,
    ServiceEntry,
    ServiceKey,
    Snapshot,
)
from dns_server.cluster.updates import Put, Remove, Update
from dns_server.protocol.codes import MAX_LABEL

K = TypeVar("K")
V = TypeVar("V")


Scope = Callable[[Iterable[Update]], Iterable[Update]]  # dns_server.cluster.scope: which namespaces are served
Subscriber = Callable[[Snapshot, Change], None]
Journal = Callable[[list[Update], float | None], None]  # every batch, as applied, with its time
PodsAt = Pod | tuple[Pod, ...]  # the running pods at one address: nearly always one


def _copy(index: Mapping[K, V]) -> dict[K, V]:
    """A snapshot index to modify.  dict.copy() clones the hash table when few entries were deleted,
    where dict() re-inserts every entry: 1.6 against 5.4 ms for 60,000 reverse names, paid per batch
    with the GIL held, so it is what a DNS query waits for while watch events are being applied."""
    return index.copy() if isinstance(index, dict) else dict(index)


def endpoint_name(hostname: str, pod_name: str, address: str, use_pod_names: bool) -> str:
    """The label an endpoint gets under its service (hostname, pod name, or dashed address)."""
    if hostname:
        return hostname
    if use_pod_names and pod_name and len(pod_name) <= MAX_LABEL:  # CoreDNS uses a pod name that is a label
        return pod_name
    dashed = address.replace(".", "-").replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


class Registry:
    """Owns the records; `apply` is the only way to change them.  Thread-safe."""

    def __init__(self, *, required_kinds: Iterable[str] = KINDS, endpoint_pod_names: bool = False,
                 clock: Callable[[], float] | None = None,
                 scope: Scope | None = None) -> None:
        self._required = frozenset(required_kinds)
        self._scope = scope
        self._synced_kinds: set[str] = set()
        self._use_pod_names = endpoint_pod_names
        self._clock = clock
        self._lock = threading.Lock()
        self._objects: dict[Key, Record] = {}
        self._slices_of: dict[ServiceKey, set[str]] = {}
        self._import_slices_of: dict[ServiceKey, set[str]] = {}
        self._explicit_namespaces: set[str] = set()
        self._namespace_uses: Counter[str] = Counter()
        self._reverse_of: dict[ServiceKey, tuple[tuple[str, str], ...]] = {}
        self._external_of: dict[ServiceKey, tuple[str, ...]] = {}
        # address -> its running pods: the one pod itself, as nearly every address has one (a 1-tuple per
        # address would cost 48 bytes more each: 7 MB at 150,000 pods)
        self._pods_at: dict[str, PodsAt] = {}
        self._counts: Counter[str] = Counter()
        self._subscribers: list[Subscriber] = []
        self.journal: Journal | None = None
        self.snapshot = Snapshot.empty(synced=not self._required)

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(snapshot, change)` after every publication (on the applying thread)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        self._subscribers.remove(callback)

    @contextmanager
    def held(self) -> Iterator[None]:
        """No batch is applied meanwhile (a worker process forked now copies a registry no thread is changing)."""
        with self._lock:
            yield

    def counts(self) -> dict[str, int]:
        """How many objects of each kind are held (for metrics)."""
        with self._lock:
            return dict(self._counts)

    def records(self) -> tuple[Record, ...]:
        """Every object held (after the namespace filter)."""
        with self._lock:
            return tuple(self._objects.values())

    def apply(self, updates: Iterable[Update], now: float | None = None) -> Snapshot:
        """Apply a batch of updates and publish one snapshot (the same one if nothing changed)."""
        with self._lock:
            if self.journal is not None:  # the same batch at the same time gives a copy of this registry the same state
                updates = list(updates)
                now = now if now is not None or self._clock is None else self._clock()
                self.journal(updates, now)
            if self._scope is not None:
                updates = self._scope(updates)
            changes: dict[Key, Record | None] = {}
            newly_synced = False
            replaced = False
            for update in updates:
                if isinstance(update, Put):
                    changes[update.record.key] = update.record
                elif isinstance(update, Remove):
                    changes[update.key] = None
                else:
                    replaced = True
                    for key in [*self._objects, *changes]:
                        if key[0] in update.kinds:
                            changes[key] = None  # unless listed again
                    for record in update.records:
                        key = record.key
                        if key[0] in update.kinds:
                            changes[key] = record
                    if not update.kinds <= self._synced_kinds:
                        self._synced_kinds |= update.kinds
                        newly_synced = True
            for key in [k for k, v in changes.items() if self._objects.get(k) == v]:
                del changes[key]  # in place: a relist of a million objects makes no second dict of them
            if not changes and not newly_synced:
                return self.snapshot
            snapshot, change = self._publish(changes, now, replaced)
        for callback in self._subscribers:
            callback(snapshot, change)
        return snapshot

    def _publish(self, changes: dict[Key, Record | None], now: float | None,
                 replaced: bool) -> tuple[Snapshot, Change]:
        old = self.snapshot
        dirty_services: set[ServiceKey] = set()
        dirty_imports: set[ServiceKey] = set()
        pods_before: dict[str, PodsAt | None] = {}  # address -> its pods before this batch, for the addresses touched
        namespaces_changed = False
        for key, new in changes.items():
            previous = self._objects.pop(key, None)
            if new is not None:
                self._objects[key] = new
            kind, namespace, name = key
            self._counts[kind] += (new is not None) - (previous is not None)
            if kind == NAMESPACE:
                namespaces_changed = True
                if new is None:
                    self._explicit_namespaces.discard(name)
                else:
                    self._explicit_namespaces.add(name)
                continue
            if (previous is None) != (new is None):
                namespaces_changed = True
                self._namespace_uses[namespace] += 1 if new is not None else -1
                if self._namespace_uses[namespace] <= 0:
                    del self._namespace_uses[namespace]
            if kind == SERVICE:
                dirty_services.add((namespace, name))
            elif kind == ENDPOINT_SLICE:
                _index_slice(self._slices_of, previous, new, dirty_services)
            elif kind == SERVICE_IMPORT:
                dirty_imports.add((namespace, name))
            elif kind == MULTICLUSTER_SLICE:
                _index_slice(self._import_slices_of, previous, new, dirty_imports)
            elif kind == POD:
                self._place(previous, new, pods_before)

        services = _copy(old.services) if dirty_services else old.services
        reverse = _copy(old.reverse) if dirty_services else old.reverse
        addresses: set[str] = set()
        for service_key in dirty_services:
            self._rebuild_service(service_key, services, reverse, addresses)  # type: ignore[arg-type]
        external, external_touched = self._index_external(dirty_services, services, old.external)
        imports = _copy(old.imports) if dirty_imports else old.imports
        for import_key in dirty_imports:
            self._rebuild_import(import_key, imports)  # type: ignore[arg-type]
        namespaces = (frozenset(self._explicit_namespaces) | frozenset(self._namespace_uses)
                      if namespaces_changed else old.namespaces)
        pod_namespaces, other_pod_ips, appeared = self._index_pods(pods_before, old)
        clock_now = now if now is not None else (self._clock() if self._clock else old.serial)
        self.snapshot = Snapshot(
            serial=max(old.serial, int(clock_now)),
            synced=self._required <= self._synced_kinds,
            namespaces=namespaces,
            services=services,
            reverse=reverse,
            other_pod_ips=other_pod_ips,
            external=external,
            pod_namespaces=pod_namespaces,
            imports=imports,
        )
        change = Change(
            services=frozenset(k for k in dirty_services if old.services.get(k) != services.get(k)),
            namespaces=old.namespaces ^ namespaces,
            pods=frozenset(appeared),
            addresses=frozenset(a for a in addresses if old.reverse.get(a) != reverse.get(a)),
            external=frozenset(a for a in external_touched if old.external.get(a) != external.get(a)),
            imports=frozenset(k for k in dirty_imports if old.imports.get(k) != imports.get(k)),
            synced=self.snapshot.synced and not old.synced,
            replaced=replaced,
        )
        return self.snapshot, change

    def _rebuild_service(self, key: ServiceKey, services: dict[ServiceKey, ServiceEntry],
                         reverse: dict[str, tuple[str, ...]], addresses: set[str]) -> None:
        """Rebuild one service's entry and its reverse names; `addresses` collects the reverse names touched."""
        namespace, name = key
        for address, target in self._reverse_of.pop(key, ()):
            addresses.add(address)
            names = tuple(n for n in reverse.get(address, ()) if n != target)
            if names:
                reverse[address] = names
            else:
                reverse.pop(address, None)
        service = self._objects.get((SERVICE, namespace, name))
        if not isinstance(service, Service):
            services.pop(key, None)
            return
        seen: set[tuple[str, str]] = set()
        ready: list[ReadyEndpoint] = []
        for slice_name in sorted(self._slices_of.get(key, ())):
            endpoint_slice = self._objects.get((ENDPOINT_SLICE, namespace, slice_name))
            assert isinstance(endpoint_slice, EndpointSlice)
            for label, address in self._ready(endpoint_slice):
                if (label, address) not in seen:
                    seen.add((label, address))
                    ready.append(ReadyEndpoint(label, address, endpoint_slice.ports))
        services[key] = ServiceEntry(service, tuple(ready))
        owned = [(ip, f"{name}.{namespace}") for ip in service.cluster_ips]
        owned += [(ep.address, f"{ep.name}.{name}.{namespace}") for ep in ready]
        for address, target in owned:
            addresses.add(address)
            if target not in reverse.get(address, ()):
                reverse[address] = reverse.get(address, ()) + (target,)
        self._reverse_of[key] = tuple(owned)

    def _rebuild_import(self, key: ServiceKey, imports: dict[ServiceKey, ImportEntry]) -> None:
        """Rebuild one ServiceImport's entry: the ready endpoints of every cluster, each under its cluster id.

        A slice without a source-cluster label gives no endpoint: its names would have no cluster label.
        """
        namespace, name = key
        service_import = self._objects.get((SERVICE_IMPORT, namespace, name))
        if not isinstance(service_import, ServiceImport):
            imports.pop(key, None)
            return
        seen: set[tuple[str, str, str]] = set()
        ready: list[ClusterEndpoint] = []
        for slice_name in sorted(self._import_slices_of.get(key, ())):
            imported = self._objects.get((MULTICLUSTER_SLICE, namespace, slice_name))
            assert isinstance(imported, MulticlusterSlice)
            if not imported.cluster:
                continue
            for label, address in self._ready(imported):
                if (imported.cluster, label, address) not in seen:
                    seen.add((imported.cluster, label, address))
                    ready.append(ClusterEndpoint(imported.cluster, label, address, imported.ports))
        imports[key] = ImportEntry(service_import, tuple(ready))

    def _ready(self, endpoint_slice: EndpointSlice | MulticlusterSlice) -> Iterator[tuple[str, str]]:
        """(name, address) of each ready address of a slice."""
        for endpoint in endpoint_slice.endpoints:
            if endpoint.ready:
                for address in endpoint.addresses:
                    yield endpoint_name(endpoint.hostname, endpoint.pod_name, address, self._use_pod_names), address

    def _index_external(self, dirty: set[ServiceKey], services: Mapping[ServiceKey, ServiceEntry],
                        old: Mapping[str, tuple[str, ...]]) -> tuple[Mapping[str, tuple[str, ...]], set[str]]:
        """The external-address index after the dirty services changed, and the addresses touched.

        Few services have external addresses: the index is copied only when one of them changed.
        """
        index = old
        touched: set[str] = set()
        for key in dirty:
            entry = services.get(key)
            after = entry.service.external_ips if entry is not None else ()
            before = self._external_of.get(key, ())
            if before == after:
                continue
            if index is old:
                index = _copy(old)
            assert isinstance(index, dict)
            owner = f"{key[1]}.{key[0]}"
            for address in before:
                names = tuple(n for n in index.get(address, ()) if n != owner)
                if names:
                    index[address] = names
                else:
                    index.pop(address, None)
            for address in after:
                index[address] = tuple(sorted({*index.get(address, ()), owner}))
            if after:
                self._external_of[key] = after
            else:
                self._external_of.pop(key, None)
            touched.update(before, after)
        return index, touched

    def _place(self, previous: Record | None, new: Record | None, before: dict[str, PodsAt | None]) -> None:
        """Keep `_pods_at` (running pods by address); `before` gets what an address held before the batch."""
        for record, adding in ((previous, False), (new, True)):
            if not isinstance(record, Pod) or not record.running:
                continue
            for ip in record.ips:
                held = self._pods_at.get(ip)
                if ip not in before:
                    before[ip] = held
                pods = () if held is None else (held,) if isinstance(held, Pod) else held
                if pods:  # most addresses hold no pod yet when a pod arrives: nothing to filter
                    pods = tuple(pod for pod in pods if (pod.namespace, pod.name) != (record.namespace, record.name))
                if adding:
                    pods += (record,)
                if len(pods) > 1:
                    self._pods_at[ip] = pods
                elif pods:
                    self._pods_at[ip] = pods[0]
                else:
                    self._pods_at.pop(ip, None)

    def _index_pods(self, before: dict[str, PodsAt | None], old: Snapshot
                    ) -> tuple[Mapping[str, str], frozenset[PodAddress], list[PodAddress]]:
        """The snapshot's pod indexes once the addresses in `before` changed, and what changed.

        (pod_namespaces, other_pod_ips, the (namespace, address) pairs that started or stopped
        running).  The indexes are copied only when they change.
        """
        claims: dict[str, str] | None = None
        others: set[PodAddress] | None = None
        appeared: list[PodAddress] = []  # or disappeared
        for address, held_before in before.items():
            held = self._pods_at.get(address)
            if held_before is None and isinstance(held, Pod) and not held.host_network:  # a listing's nearly every pod
                appeared.append((held.namespace, address))
                if claims is None:
                    claims = _copy(old.pod_namespaces)
                claims[address] = held.namespace
                continue
            claim, old_claim = claimant(held), old.pod_namespaces.get(address)
            running, was_running = _namespaces(held), _namespaces(held_before)
            if running != was_running:
                appeared.extend((namespace, address) for namespace in running ^ was_running)
            if claim != old_claim:
                if claims is None:
                    claims = _copy(old.pod_namespaces)
                if claim is None:
                    del claims[address]
                else:
                    claims[address] = claim
            unclaimed = running - {claim}
            was_unclaimed = was_running - {old_claim}
            if unclaimed or was_unclaimed:  # rare: a hostNetwork pod, or pods of two namespaces at one address
                if others is None:
                    others = set(old.other_pod_ips)
                others.difference_update((namespace, address) for namespace in was_unclaimed)
                others.update((namespace, address) for namespace in unclaimed)
        return (old.pod_namespaces if claims is None else claims,
                old.other_pod_ips if others is None else frozenset(others), appeared)


def _index_slice(index: dict[ServiceKey, set[str]], previous: Record | None, new: Record | None,
                 dirty: set[ServiceKey]) -> None:
    """Keep `index` (service -> the names of its slices) and mark the services a slice left or joined dirty."""
    if isinstance(previous, (EndpointSlice, MulticlusterSlice)) and previous.service:
        key = (previous.namespace, previous.service)
        dirty.add(key)
        owned = index.get(key)
        if owned is not None:
            owned.discard(previous.name)
            if not owned:
                del index[key]
    if isinstance(new, (EndpointSlice, MulticlusterSlice)) and new.service:
        key = (new.namespace, new.service)
        dirty.add(key)
        index.setdefault(key, set()).add(new.name)


def claimant(pods: PodsAt | None) -> str | None:
    """The namespace autopath takes an address for, the same whatever order the pods came in.

    A pod being deleted yields to a live one; between live pods the newest claim wins (an older
    one's deletion has not arrived yet), then the greatest (namespace, name), so the choice never
    depends on the order of events.  hostNetwork pods never claim (their address is the node's),
    nor finished ones (`_place` holds running pods only).
    """
    if isinstance(pods, Pod):
        return None if pods.host_network else pods.namespace  # nearly every address: no contest
    best = max((pod for pod in pods or () if not pod.host_network),
               key=lambda pod: (not pod.terminating, pod.created, pod.namespace, pod.name), default=None)
    return None if best is None else best.namespace


def _namespaces(pods: PodsAt | None) -> frozenset[str]:
    """The namespaces with a running pod at an address."""
    if pods is None:
        return frozenset()
    return frozenset((pods.namespace,)) if isinstance(pods, Pod) else frozenset(pod.namespace for pod in pods)
