"""The composition root's GC policy: the heap is frozen when whole kinds were loaded into a synced registry."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.serving.answer_table import View
from dns_server.serving.runtime import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    gc.unfreeze()
    registry = Registry()
    yield Cluster(None, registry, None, View(registry.snapshot))  # type: ignore[arg-type]
    gc.unfreeze()


@pytest.mark.parametrize("synced, change, frozen", [
    (True, Change(replaced=True), True),  # a listing, a relist or a reload of the files
    (True, Change(services=frozenset({("shop", "cart")})), False),  # one watch event: not worth a freeze
    (False, Change(replaced=True), False),  # a kind listed before the others: the data is still growing
])
def test_the_heap_is_frozen_only_after_whole_kinds_were_loaded_into_a_synced_registry(
        cluster: Cluster, synced: bool, change: Change, frozen: bool) -> None:
    snapshot = Snapshot.empty(synced)
    cluster.deliver(snapshot, change)
    assert cluster.view.snapshot is snapshot
    assert (gc.get_freeze_count() > 0) == frozen
