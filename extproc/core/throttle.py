"""Rate-limiting a log line: a failure that repeats for every request is said once per
interval, not once per request."""

from __future__ import annotations

import time


class Throttle:
    """True at most once per `interval_s` of real (monotonic) time. Not thread-safe:
    callers hold their own lock, or run on one event loop."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval_s
        return True
