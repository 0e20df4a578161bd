"""A clock for the judge's circuit breaker that moves only when a test says so."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds, advanced by hand: `open_s` passes without anyone sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
