"""The registry's incremental rebuild: a snapshot built change by change equals one built from scratch.

The registry rebuilds only the service entries, reverse names, pod addresses and external addresses
a batch touches.
After random batches of puts and removes over a small cluster whose objects collide often (the
strategies of test_invalidation.py), its snapshot must hold exactly what a registry given the
resulting objects in one listing holds, and each `Change` must name every service entry, namespace,
pod address, reverse name and external address that differs from the snapshot before.
"""

from __future__ import annotations

from typing import Any, Mapping

from hypothesis import HealthCheck, given, settings

from dns_server.cluster.records import KINDS, Key, Namespace, Pod, Record, Service
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.cluster.updates import Put, Remove, Replace, Update
from tests.unit.serving.test_invalidation import NAMESPACES, PORTS, batches


def contents(snapshot: Snapshot) -> tuple[object, ...]:
    return (snapshot.namespaces, dict(snapshot.services), {a: sorted(n) for a, n in snapshot.reverse.items()},
            dict(snapshot.pod_namespaces), snapshot.other_pod_ips, dict(snapshot.external))


def running(snapshot: Snapshot) -> set[tuple[str, str]]:
    """Every running pod's (namespace, address), from the snapshot's two indexes of them."""
    return {(namespace, address) for address, namespace in snapshot.pod_namespaces.items()} | snapshot.other_pod_ips


def differing(before: Mapping[Any, object], after: Mapping[Any, object]) -> set[Any]:
    """The keys whose values differ between two mappings."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_a_snapshot_built_change_by_change_equals_one_built_from_scratch(
        batches: list[tuple[list[Update], int]]) -> None:
    registry = Registry(required_kinds=KINDS)
    changes: list[Change] = []
    registry.subscribe(lambda snapshot, change: changes.append(change))
    start: list[Record] = [record for namespace in NAMESPACES for record in (
        Namespace(namespace), Service(namespace, "s1", ("10.96.0.1",), False, "", PORTS[:1]),
        Service(namespace, "h1", (), True, "", PORTS[:2]))]  # the services most changes then touch
    registry.apply([Replace(frozenset(KINDS), tuple(start))], now=1)
    objects: dict[Key, Record] = {record.key: record for record in start}
    for batch, _ in batches:
        before = registry.snapshot
        changes.clear()
        registry.apply(batch, now=2)
        for update in batch:
            if isinstance(update, Put):
                objects[update.record.key] = update.record
            else:
                assert isinstance(update, Remove)
                objects.pop(update.key, None)
        scratch = Registry(required_kinds=KINDS)
        scratch.apply([Replace(frozenset(KINDS), tuple(objects.values()))], now=2)
        assert contents(registry.snapshot) == contents(scratch.snapshot)
        assert running(registry.snapshot) == {(pod.namespace, address) for pod in objects.values()
                                              if isinstance(pod, Pod) and pod.running for address in pod.ips}
        after = registry.snapshot
        change = changes[-1] if changes else Change()  # nothing published: nothing may differ
        assert differing(before.services, after.services) <= change.services
        assert before.namespaces ^ after.namespaces <= change.namespaces
        assert running(before) ^ running(after) <= change.pods
        assert differing(before.reverse, after.reverse) <= change.addresses
        assert differing(before.external, after.external) <= change.external


def test_a_relist_drops_what_it_no_longer_lists_even_what_the_same_batch_put_before_it() -> None:
    registry = Registry(required_kinds=KINDS)
    kept, dropped, early, late = (Service("a", name, (f"10.96.0.{i}",), False, "", PORTS[:1])
                                  for i, name in enumerate(("kept", "dropped", "early", "late"), 1))
    registry.apply([Replace(frozenset(KINDS), (Namespace("a"), kept, dropped))], now=1)
    registry.apply([Put(early), Replace(frozenset({"Service"}), (kept,)), Put(late)], now=2)
    assert set(registry.snapshot.services) == {("a", "kept"), ("a", "late")}
    assert registry.counts() == {"Namespace": 1, "Service": 2}
    assert registry.snapshot.reverse.get("10.96.0.2") is None and registry.snapshot.reverse["10.96.0.1"]
