"""The composition root's GC policy: the heap is frozen when whole kinds were loaded into a synced registry,
and again each time the answer tables have grown by FREEZE_GROWTH answers."""

from __future__ import annotations

import gc
import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.serving.answer_table import View
from dns_server.serving import runtime
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


def test_answers_are_frozen_each_time_the_tables_have_grown_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    monkeypatch.setattr(runtime, "FREEZE_POLL", 0)
    monkeypatch.setattr(runtime, "FREEZE_GROWTH", 3)
    table: list[object] = []
    frozen_after: list[bool] = []
    running = SimpleNamespace(pipelines=[SimpleNamespace(table=table)])

    async def grow() -> None:
        task = asyncio.create_task(runtime._freeze_new_answers(running))  # type: ignore[arg-type]
        for size in (2, 3, 4, 5, 1, 4):  # +2: not yet; +3: freeze; +1, +2: not yet; shrunk; +3: freeze
            table[:] = [None] * size
            gc.unfreeze()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            frozen_after.append(gc.get_freeze_count() > 0)
        task.cancel()

    try:
        asyncio.run(grow())
    finally:
        gc.unfreeze()
    assert frozen_after == [False, True, False, False, False, True]
