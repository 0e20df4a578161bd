"""A circuit breaker per judge endpoint, so a dead judge costs a stream nothing.

Without it every tool call waits out the judge's whole `timeout_s` (and its retries) while
the judge is down. After `failures` consecutive failed judgements the breaker opens: the
judge is not called and the policy's fail mode applies at once. After `open_s` one probe
call is let through; its success closes the breaker, its failure opens it again.

    CLOSED --TRIP--> OPEN --COOLED--> HALF_OPEN --PROBE_SUCCESS--> CLOSED
                      ^                   |
                      +--PROBE_FAILURE----+   (PROBE_ABANDONED too, timer kept)

One breaker serves every policy, chain and reload in the process that asks the same
endpoint (base_url + model): they share the judge's health. The registry that holds them
is bounded. The breaker never sees an HTTP client or a key: it is told outcomes only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # monotonic seconds
MAX_ENDPOINTS = 64  # a process asks a handful of judges; reloads may leave stale ones


class BreakerConfig(BaseModel):
    """`breaker:` on a tool_call_judge policy. `failures: 0` turns the breaker off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(default=5, ge=0, le=1000)
    open_s: float = Field(default=30, gt=0, le=3600)


class BreakerState(Enum):
    CLOSED = "closed"  # the judge is called
    OPEN = "open"  # the judge is not called until `open_s` has passed
    HALF_OPEN = "half_open"  # one probe call is under way; everyone else is refused


class BreakerEvent(Enum):
    SUCCESS = "success"  # a call admitted while closed succeeded
    FAILURE = "failure"  # ...failed, below the limit (or late, once already open)
    TRIP = "trip"  # ...failed, and that made `failures` in a row
    COOLED = "cooled"  # a call arrived after `open_s`: it becomes the probe
    PROBE_SUCCESS = "probe_success"
    PROBE_FAILURE = "probe_failure"
    PROBE_ABANDONED = "probe_abandoned"  # the probe was cancelled before an outcome


S, E = BreakerState, BreakerEvent
TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (S.CLOSED, E.SUCCESS): S.CLOSED,
    (S.CLOSED, E.FAILURE): S.CLOSED,
    (S.CLOSED, E.TRIP): S.OPEN,
    # Calls admitted before the breaker opened may end after it did: they change nothing,
    # only the probe decides whether the judge is back.
    (S.OPEN, E.SUCCESS): S.OPEN,
    (S.OPEN, E.FAILURE): S.OPEN,
    (S.OPEN, E.COOLED): S.HALF_OPEN,
    (S.HALF_OPEN, E.SUCCESS): S.HALF_OPEN,
    (S.HALF_OPEN, E.FAILURE): S.HALF_OPEN,
    (S.HALF_OPEN, E.PROBE_SUCCESS): S.CLOSED,
    (S.HALF_OPEN, E.PROBE_FAILURE): S.OPEN,
    # A cancelled probe (its client hung up) says nothing about the judge: back to OPEN
    # with the old timer, so the next call probes at once.
    (S.HALF_OPEN, E.PROBE_ABANDONED): S.OPEN,
}
del S, E


class BreakerError(RuntimeError):
    """An event the transition table does not allow: a bug, never a judge fault."""


class CircuitOpen(Exception):
    """The breaker refused the call. `reason` is safe to show a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A judge as the breaker knows it. Only `label` is ever logged: host and model."""

    base_url: str
    model: str

    @property
    def label(self) -> str:
        # hostname and port only: a base_url may carry user:password@ or a query token.
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{self.model} at {host}{port}"


@dataclass(frozen=True, slots=True)
class _Permit:
    probe: bool


class CircuitBreaker:
    """The breaker of one endpoint. `call()` guards one judgement."""

    def __init__(self, endpoint: Endpoint, config: BreakerConfig, clock: Clock) -> None:
        if config.failures < 1:
            raise ValueError("a breaker needs failures >= 1 (0 means: no breaker)")
        self.endpoint = endpoint
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()  # cheap, and safe should two loops share a judge
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive failed judgements (probes included)
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    @contextmanager
    def call(self) -> Iterator[None]:
        """Guard one judgement: raises CircuitOpen when the judge must not be called.
        An exception from the block is a failed judgement; cancellation is no outcome."""
        permit = self._admit()
        try:
            yield
        except Exception:
            self._settle(permit, ok=False)
            raise
        except BaseException:  # cancelled: the judge neither failed nor answered
            if permit.probe:
                self._fire(BreakerEvent.PROBE_ABANDONED)
            raise
        self._settle(permit, ok=True)

    def _admit(self) -> _Permit:
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return _Permit(probe=False)
            if self._state is BreakerState.OPEN:
                left = self._opened_at + self.config.open_s - self._clock()
                if left <= 0:
                    self._fire_locked(BreakerEvent.COOLED)
                    return _Permit(probe=True)
                when = f"retrying in {math.ceil(left)}s"
            else:
                when = "a probe call is under way"
            raise CircuitOpen(
                f"judge circuit open after {self._failures} consecutive failures; {when}"
            )

    def _settle(self, permit: _Permit, ok: bool) -> None:
        with self._lock:
            if permit.probe:
                event = BreakerEvent.PROBE_SUCCESS if ok else BreakerEvent.PROBE_FAILURE
            elif ok:
                event = BreakerEvent.SUCCESS
            elif self._state is BreakerState.CLOSED and self._failures + 1 >= self.config.failures:
                event = BreakerEvent.TRIP
            else:
                event = BreakerEvent.FAILURE
            self._fire_locked(event)

    def _fire(self, event: BreakerEvent) -> None:
        with self._lock:
            self._fire_locked(event)

    def _fire_locked(self, event: BreakerEvent) -> None:
        before = self._state
        after = TRANSITIONS.get((before, event))
        if after is None:
            raise BreakerError(f"breaker event {event.name} is not allowed in {before.name}")
        self._state = after
        # What each transition does besides changing the state.
        now = self._clock()
        if event is BreakerEvent.SUCCESS and before is BreakerState.CLOSED:
            self._failures = 0
        elif event is BreakerEvent.FAILURE and before is BreakerState.CLOSED:
            self._failures += 1
        elif event is BreakerEvent.TRIP:
            self._failures += 1
            self._opened_at = now
            log.warning(
                "judge %s: circuit opened after %d consecutive failures; "
                "the judge is not called for %gs (the policies' on_judge_error applies)",
                self.endpoint.label, self._failures, self.config.open_s,
            )  # fmt: skip
        elif event is BreakerEvent.PROBE_FAILURE:
            self._failures += 1
            self._opened_at = now
            log.info(
                "judge %s: probe call failed; circuit open for another %gs",
                self.endpoint.label, self.config.open_s,
            )  # fmt: skip
        elif event is BreakerEvent.PROBE_SUCCESS:
            log.info(
                "judge %s: probe call succeeded after %d consecutive failures; circuit closed",
                self.endpoint.label, self._failures,
            )  # fmt: skip
            self._failures = 0


class BreakerRegistry:
    """The breakers of a process, one per endpoint, the least recently asked for dropped
    past `max_endpoints` (a policy that holds a dropped breaker keeps using it)."""

    def __init__(self, clock: Clock = time.monotonic, max_endpoints: int = MAX_ENDPOINTS) -> None:
        self.clock = clock
        self._max = max_endpoints
        self._lock = threading.Lock()
        self._breakers: OrderedDict[Endpoint, CircuitBreaker] = OrderedDict()

    def breaker(self, endpoint: Endpoint, config: BreakerConfig) -> CircuitBreaker | None:
        """The endpoint's breaker, or None when `config` turns it off. Settings are the
        latest asked for: a reload that changes them applies them and keeps the state."""
        if config.failures == 0:
            return None
        with self._lock:
            found = self._breakers.get(endpoint)
            if found is None:
                found = self._breakers[endpoint] = CircuitBreaker(endpoint, config, self.clock)
                while len(self._breakers) > self._max:
                    self._breakers.popitem(last=False)
            else:
                found.config = config
                self._breakers.move_to_end(endpoint)
            return found

    def __len__(self) -> int:
        return len(self._breakers)


# Every policy in the process shares these, unless it is given a registry of its own.
BREAKERS = BreakerRegistry()
