"""The batching rule every source shares: a burst of updates becomes one snapshot, on a fake clock."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from dns_server.cluster.records import NAMESPACE, Namespace
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.cluster.sources.applier import Applier
from dns_server.cluster.updates import Put, Replace
from tests.clock import Clock

QUIET, MAX_DELAY = 0.25, 1.0  # binary fractions: the fake clock adds them up exactly
THREAD_WAIT = 30.0  # generous: a thread that has not ended by then never will


def watched(registry: Registry) -> list[int]:
    """The number of namespaces in each snapshot the registry publishes."""
    published: list[int] = []
    registry.subscribe(lambda snapshot, change: published.append(len(snapshot.namespaces)))
    return published


def test_a_burst_is_applied_as_one_snapshot_once_quiet_and_callbacks_run_after() -> None:
    registry, clock = Registry(required_kinds={NAMESPACE}), Clock()
    published = watched(registry)
    applier = Applier(registry, quiet=QUIET, max_delay=MAX_DELAY, clock=clock)
    seen_by_callback: list[int] = []
    applier.put([Replace(frozenset({NAMESPACE}), ())], lambda: seen_by_callback.append(len(published)))
    for i in range(100):
        applier.put([Put(Namespace(f"ns-{i}"))])
    clock.now += QUIET / 2
    assert not applier.apply_due() and published == []
    clock.now += QUIET / 2
    assert applier.apply_due()
    assert published == [100]  # the Replace and 100 events: one snapshot
    assert seen_by_callback == [1]  # the callback ran once the snapshot was published
    assert registry.snapshot.synced
    clock.now += QUIET
    assert not applier.apply_due()  # nothing new since


def test_each_update_restarts_the_quiet_wait() -> None:
    registry, clock = Registry(required_kinds=set()), Clock()
    published = watched(registry)
    applier = Applier(registry, quiet=QUIET, max_delay=MAX_DELAY, clock=clock)
    for i in range(3):
        applier.put([Put(Namespace(f"ns-{i}"))])
        clock.now += QUIET / 2
        assert not applier.apply_due()
    clock.now += QUIET / 2
    assert applier.apply_due() and published == [3]


def test_a_steady_stream_is_applied_at_most_max_delay_after_its_first_update() -> None:
    """An update every QUIET/2, never a quiet moment: a batch is still published every MAX_DELAY."""
    registry, clock = Registry(required_kinds=set()), Clock()
    sent = 0
    published: list[int] = []  # how many updates had been sent when each snapshot was published
    registry.subscribe(lambda snapshot, change: published.append(sent))
    applier = Applier(registry, quiet=QUIET, max_delay=MAX_DELAY, clock=clock)
    for i in range(20):
        applier.put([Put(Namespace(f"ns-{i}"))])
        sent += 1
        applier.apply_due()
        clock.now += QUIET / 2
    clock.now += QUIET
    assert applier.apply_due()
    assert published == [9, 18, 20]  # updates 1, 10 and 19 opened a window; each closed 1 s later
    assert len(registry.snapshot.namespaces) == 20


def test_a_failing_apply_is_logged_and_the_next_burst_still_applies(caplog: pytest.LogCaptureFixture) -> None:
    registry, clock = Registry(required_kinds=set()), Clock()
    failures = [RuntimeError("a bug in a subscriber")]

    def subscriber(snapshot: Snapshot, change: Change) -> None:
        if failures:
            raise failures.pop()

    registry.subscribe(subscriber)
    applier = Applier(registry, quiet=QUIET, max_delay=MAX_DELAY, clock=clock)
    applier.put([Put(Namespace("a"))])
    clock.now += QUIET
    with caplog.at_level(logging.ERROR):
        assert applier.apply_due()
    assert "applying 1 updates failed" in caplog.text and "a bug in a subscriber" in caplog.text
    applier.put([Put(Namespace("b"))])
    clock.now += QUIET
    assert applier.apply_due()
    assert registry.snapshot.namespaces == {"a", "b"}


def test_run_applies_on_the_real_clock_and_on_close_applies_what_is_left() -> None:
    registry = Registry(required_kinds=set())
    published = watched(registry)
    applier = Applier(registry, quiet=0.01, max_delay=0.05)
    thread = threading.Thread(target=applier.run)
    thread.start()
    applier.put([Put(Namespace("first"))])
    deadline = time.monotonic() + THREAD_WAIT
    while not published and time.monotonic() < deadline:
        time.sleep(0.001)
    assert published == [1]  # applied by the running thread, no close needed
    applier.put([Put(Namespace("second"))])
    applier.close()  # at once, without waiting for the quiet time
    thread.join(THREAD_WAIT)
    assert not thread.is_alive()
    assert registry.snapshot.namespaces == {"first", "second"}
