"""The one fake clock of the tests: code that takes `clock=` reads it, the test moves it by hand."""

from __future__ import annotations


class Clock:
    """A clock that stands still until the test moves it (`clock.now += 0.25`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
