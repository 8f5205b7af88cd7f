"""The supervisor's readiness: every cluster synced, in the supervisor and in every worker, every
worker's first answers made ahead after a start, and no worker late acknowledging what it was sent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dns_server.config.model import Config, ServerBlock, ZoneKey
from dns_server.supervisor import LATE, Generation


@pytest.mark.parametrize("clusters, workers, not_ready", [
    ([True], [True, True], []),
    ([True], [True, False], ["kubernetes"]),  # a worker has not applied the first sync yet
    ([False], [True, True], ["kubernetes"]),
    ([True, False], [True, True], ["kubernetes"]),
    ([], [True], []),
])
def test_ready_once_every_cluster_and_every_worker_synced(clusters: list[bool], workers: list[bool],
                                                         not_ready: list[str]) -> None:
    generation = Generation(Config((ServerBlock((ZoneKey(""),)),)),
                            {index: SimpleNamespace(synced=synced) for index, synced in enumerate(clusters)},  # type: ignore[misc]
                            {}, [SimpleNamespace(synced=synced, warm=True) for synced in workers])  # type: ignore[misc]
    assert generation.not_ready() == not_ready


def test_after_a_start_ready_once_every_worker_answered_ahead_and_then_whatever_a_restarted_one_does() -> None:
    workers = [SimpleNamespace(synced=True, warm=True), SimpleNamespace(synced=True, warm=False)]
    generation = Generation(Config((ServerBlock((ZoneKey(""),)),)), {}, {}, workers)  # type: ignore[arg-type]
    assert generation.not_ready() == ["kubernetes"]
    workers[1].warm = True
    assert generation.not_ready() == []
    workers[1] = SimpleNamespace(synced=True, warm=False)  # killed and started again: it answers at once
    assert generation.not_ready() == []


def test_a_reloaded_generation_is_ready_before_its_workers_answered_ahead() -> None:
    generation = Generation(Config((ServerBlock((ZoneKey(""),)),)), {}, {},
                            [SimpleNamespace(synced=True, warm=False)], warm=True)  # type: ignore[list-item]
    assert generation.not_ready() == []


@pytest.mark.parametrize("silences, late", [
    ([0.0, 0.0], False),
    ([LATE / 2, 0.0], False),  # a batch on its way
    ([0.0, LATE * 2], True),  # a worker that has not acknowledged a batch or a ping
])
def test_late_while_a_worker_has_not_acknowledged_what_it_was_sent(silences: list[float], late: bool) -> None:
    generation = Generation(Config((ServerBlock((ZoneKey(""),)),)), {}, {},
                            [SimpleNamespace(silent_for=lambda now, silence=silence: silence)  # type: ignore[misc]
                             for silence in silences])
    assert generation.late() is late
