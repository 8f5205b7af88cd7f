"""The API source's pure parts: backoff, batching, what is watched with which selectors."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dns_server.app import required_kinds, scope_for
from dns_server.config import Config
from dns_server.records import ENDPOINT_SLICE, NAMESPACE, POD, SERVICE, Namespace
from dns_server.registry import Put, Registry, Replace
from dns_server.scope import FixedNamespaces, SelectedNamespaces
from dns_server.sources.kube import (
    RUNNING_PODS_FIELD_SELECTOR, Backoff, Batcher, Resource, resources_for,
)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial=0.8, cap=30.0)
    rng = random.Random(7)
    for failures, base in [(1, 0.8), (2, 1.6), (3, 3.2), (5, 12.8), (6, 25.6), (7, 30.0), (100, 30.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), failures
        assert max(delays) - min(delays) > base / 4  # jittered: restarts are not in lockstep


@pytest.mark.parametrize("options, expected", [
    ({}, [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE)]),
    ({"pods": "verified"}, [Resource(NAMESPACE), Resource(SERVICE), Resource(ENDPOINT_SLICE),
                            Resource(POD, field_selector=RUNNING_PODS_FIELD_SELECTOR)]),
    ({"labels": "app=web", "namespace_labels": "team", "pods": "verified"},
     [Resource(NAMESPACE, "team"), Resource(SERVICE, "app=web"), Resource(ENDPOINT_SLICE, "app=web"),
      Resource(POD, "app=web", RUNNING_PODS_FIELD_SELECTOR)]),
])
def test_resources_and_their_server_side_selectors(options: dict[str, str], expected: list[Resource]) -> None:
    assert list(resources_for(Config(**options))) == expected  # type: ignore[arg-type]


def test_required_kinds_and_scope_follow_the_flags() -> None:
    assert required_kinds(Config()) == {NAMESPACE, SERVICE, ENDPOINT_SLICE}
    assert required_kinds(Config(pods="verified")) == {NAMESPACE, SERVICE, ENDPOINT_SLICE, POD}
    assert scope_for(Config()) is None
    assert isinstance(scope_for(Config(namespaces=("a", "b"))), FixedNamespaces)
    assert isinstance(scope_for(Config(namespace_labels="team=a")), SelectedNamespaces)


def test_the_batcher_applies_a_burst_as_one_snapshot_and_runs_callbacks_after() -> None:
    registry = Registry(required_kinds={NAMESPACE})
    published: list[int] = []
    registry.subscribe(lambda snapshot: published.append(len(snapshot.namespaces)))
    batcher = Batcher(registry, quiet=0.05, max_delay=0.5)
    applied = threading.Event()
    batcher.put([Replace(frozenset({NAMESPACE}), ())], lambda: applied.set())
    for i in range(100):
        batcher.put([Put(Namespace(f"ns-{i}"))])
    batcher.close()
    thread = threading.Thread(target=batcher.run)
    started = time.monotonic()
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert applied.is_set()
    assert published == [100]  # the Replace and 100 events: one snapshot
    assert registry.snapshot.synced
    assert time.monotonic() - started < 1.0


def test_the_batcher_bounds_the_delay_under_a_steady_stream() -> None:
    registry = Registry(required_kinds=set())
    published: list[float] = []
    registry.subscribe(lambda snapshot: published.append(time.monotonic()))
    batcher = Batcher(registry, quiet=0.02, max_delay=0.05)
    thread = threading.Thread(target=batcher.run)
    thread.start()
    first = time.monotonic()
    for i in range(60):  # one event every 5 ms: never quiet for 20 ms
        batcher.put([Put(Namespace(f"ns-{i}"))])
        time.sleep(0.005)
    batcher.close()
    thread.join(5)
    assert published and published[0] - first < 0.25  # the first batch did not wait for the 0.3 s stream to end
    assert 2 <= len(published) < 60
