"""One batching rule for every source: a burst of changes becomes one snapshot.

A `Window` says when a burst is complete: once `quiet` seconds pass without a new change, or
`max_delay` seconds after its first change even if changes keep coming.  The fixture source waits
for it before reading files that are changing (a file written in pieces is read once, whole); the
`Applier` waits for it before applying the updates the API's watch threads queued, so a burst of
events publishes one snapshot, not one per event.

Both take the clock as a callable returning monotonic seconds: tests move a fake one forward and
call `Applier.apply_due()` themselves instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from dns_server.cluster.registry import Registry
from dns_server.cluster.updates import Update

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # monotonic seconds


class Window:
    """When a burst of changes is complete: `quiet` after the latest, at most `max_delay` after the first."""

    def __init__(self, quiet: float, max_delay: float, clock: Clock = time.monotonic) -> None:
        self.quiet = quiet
        self.max_delay = max_delay
        self._clock = clock
        self._first: float | None = None
        self._latest = 0.0

    def changed(self) -> None:
        """A change happened now."""
        now = self._clock()
        if self._first is None:
            self._first = now
        self._latest = now

    def remaining(self) -> float | None:
        """Seconds until the burst is complete (0 once it is); None if nothing has changed."""
        if self._first is None:
            return None
        return max(0.0, min(self._latest + self.quiet, self._first + self.max_delay) - self._clock())

    def due(self) -> bool:
        return self.remaining() == 0.0

    def reset(self) -> None:
        """The burst was used up (or undone): wait for the next change."""
        self._first = None


class Applier:
    """Collects updates from many threads and applies each burst to the registry as one batch."""

    def __init__(self, registry: Registry, *, quiet: float, max_delay: float, clock: Clock = time.monotonic) -> None:
        self._registry = registry
        self._window = Window(quiet, max_delay, clock)
        self._ready = threading.Condition()
        self._updates: list[Update] = []
        self._callbacks: list[Callable[[], None]] = []
        self._closed = False

    def put(self, updates: list[Update], applied: Callable[[], None] | None = None) -> None:
        """Queue updates; `applied()` runs on the applying thread once they are published."""
        with self._ready:
            self._updates.extend(updates)
            if applied is not None:
                self._callbacks.append(applied)
            self._window.changed()
            self._ready.notify()

    def close(self) -> None:
        """Make `run()` apply what is queued at once and return."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def apply_due(self) -> bool:
        """Apply the queued burst if its window is complete; True if it did."""
        with self._ready:
            if not self._window.due():
                return False
        self._apply()
        return True

    def run(self) -> None:
        """Apply bursts as their windows complete, until close(); then apply what is left and return."""
        while True:
            with self._ready:
                while not self._closed and (wait := self._window.remaining()) != 0.0:
                    self._ready.wait(wait)  # None: until something is queued
                closed = self._closed
            self._apply()
            if closed:
                return

    def _apply(self) -> None:
        with self._ready:
            updates, callbacks = self._updates, self._callbacks
            self._updates, self._callbacks = [], []
            self._window.reset()
        if not updates and not callbacks:
            return
        try:
            self._registry.apply(updates)
            for callback in callbacks:
                callback()
        except Exception:  # a bug: keep the last good snapshot and carry on
            log.exception("applying %d updates failed", len(updates))
