"""Where limit counters live: the `Counters` interface, and `MemoryCounters` for a
single replica (or a store-less setup) in this process.

Counters are integers per (caller, metric, window period): `requests`, `tokens` and
`usd_micros` (millionths of a dollar, so a budget never drifts by float rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from extproc.limits.windows import Window

Metric = Literal["requests", "tokens", "usd_micros"]
METRICS: tuple[Metric, ...] = ("requests", "tokens", "usd_micros")
# How often, at most, MemoryCounters sweeps out counters of past periods.
_PRUNE_EVERY_S = 60.0


class CounterStoreError(Exception):
    """The counter store could not answer. The message says why, never where with what
    credentials: a store URL may carry a password."""


@dataclass(frozen=True, slots=True)
class Check:
    """One counter `admit` reads; the request is admitted only if it is below `limit`."""

    metric: Metric
    window: Window
    limit: int


class Counters(Protocol):
    async def admit(self, caller: str, checks: Sequence[Check], now: float) -> list[int]:
        """Read every checked counter at once; if each is below its limit, add 1 to the
        `requests` ones among them. Returns the values read, before any increment. A
        refused request changes nothing."""
        ...

    async def charge(
        self, caller: str, amounts: Mapping[Metric, int], windows: Sequence[Window], now: float
    ) -> None:
        """Add each amount to its metric's counter in each window."""
        ...

    async def read(
        self, caller: str, keys: Sequence[tuple[Metric, Window]], now: float
    ) -> dict[tuple[Metric, Window], int]:
        """The current value of each (metric, window) counter (0 when there is none)."""
        ...

    async def aclose(self) -> None: ...


_Key = tuple[str, Metric, str]


class MemoryCounters:
    """Counters in a dict. Safe without locks: no method awaits between reading and
    writing, so on one event loop each call is atomic."""

    def __init__(self) -> None:
        # (caller, metric, period) -> (value, when the period ends)
        self._counts: dict[_Key, tuple[int, float]] = {}
        self._next_prune = 0.0

    def __len__(self) -> int:
        return len(self._counts)

    def _value(self, caller: str, metric: Metric, window: Window, now: float) -> int:
        entry = self._counts.get((caller, metric, window.period(now)))
        return entry[0] if entry else 0

    def _add(self, caller: str, metric: Metric, window: Window, amount: int, now: float) -> None:
        key = (caller, metric, window.period(now))
        value, ends = self._counts.get(key) or (0, window.resets_at(now))
        self._counts[key] = (value + amount, ends)

    def _prune(self, now: float) -> None:
        """Drop counters of periods that have ended, so memory stays bounded by the
        callers active in current windows."""
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY_S
        for key in [k for k, (_, ends) in self._counts.items() if ends <= now]:
            del self._counts[key]

    async def admit(self, caller: str, checks: Sequence[Check], now: float) -> list[int]:
        self._prune(now)
        values = [self._value(caller, c.metric, c.window, now) for c in checks]
        if all(v < c.limit for v, c in zip(values, checks, strict=True)):
            for check in checks:
                if check.metric == "requests":
                    self._add(caller, "requests", check.window, 1, now)
        return values

    async def charge(
        self, caller: str, amounts: Mapping[Metric, int], windows: Sequence[Window], now: float
    ) -> None:
        self._prune(now)
        for metric, amount in amounts.items():
            if amount:
                for window in windows:
                    self._add(caller, metric, window, amount, now)

    async def read(
        self, caller: str, keys: Sequence[tuple[Metric, Window]], now: float
    ) -> dict[tuple[Metric, Window], int]:
        return {(m, w): self._value(caller, m, w, now) for m, w in keys}

    async def aclose(self) -> None:
        self._counts.clear()
