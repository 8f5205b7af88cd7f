"""The supervisor's readiness: every cluster synced, in the supervisor and in every worker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dns_server.config.model import Config, ServerBlock, ZoneKey
from dns_server.supervisor import Generation


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
                            {}, [SimpleNamespace(synced=synced) for synced in workers])  # type: ignore[list-item]
    assert generation.not_ready() == not_ready
