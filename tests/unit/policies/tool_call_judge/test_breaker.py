"""The judge's circuit breaker (extproc/policies/tool_call_judge/breaker.py): its state
machine, driven by an injected clock, and the registry that shares one per endpoint."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractContextManager

import pytest
from pydantic import ValidationError

from extproc.policies.tool_call_judge.breaker import (
    TRANSITIONS,
    BreakerConfig,
    BreakerError,
    BreakerEvent,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Endpoint,
)
from tests.unit.policies.tool_call_judge.fake_clock import FakeClock

ENDPOINT = Endpoint("http://127.0.0.1:9000/v1", "judge-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(clock: FakeClock, failures: int = 3, open_s: float = 30) -> CircuitBreaker:
    return CircuitBreaker(ENDPOINT, BreakerConfig(failures=failures, open_s=open_s), clock)


def succeed(b: CircuitBreaker) -> None:
    with b.call():
        pass


def fail(b: CircuitBreaker) -> None:
    with pytest.raises(RuntimeError), b.call():
        raise RuntimeError("judge returned HTTP 500")


def refused(b: CircuitBreaker) -> str:
    with pytest.raises(CircuitOpen) as info, b.call():
        pytest.fail("the judge must not be called while the circuit is open")
    return info.value.reason


@pytest.fixture
def held() -> list[AbstractContextManager[None]]:
    """Calls a test keeps under way (entered, not yet settled), oldest first."""
    return []


def start(b: CircuitBreaker, held: list[AbstractContextManager[None]]) -> None:
    call = b.call()
    call.__enter__()
    held.append(call)


def settle(held: list[AbstractContextManager[None]], error: BaseException | None) -> None:
    call = held.pop(0)
    if error is None:
        call.__exit__(None, None, None)
    else:
        assert not call.__exit__(type(error), error, None)  # never swallowed


def test_table_is_complete_for_the_documented_edges() -> None:
    closed, open_, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert TRANSITIONS[(closed, BreakerEvent.TRIP)] is open_
    assert TRANSITIONS[(open_, BreakerEvent.COOLED)] is half
    assert TRANSITIONS[(half, BreakerEvent.PROBE_SUCCESS)] is closed
    assert TRANSITIONS[(half, BreakerEvent.PROBE_FAILURE)] is open_
    # Only the probe closes the circuit; nothing but a trip opens it from closed.
    assert [k for k, v in TRANSITIONS.items() if v is closed and k[0] is not closed] == [
        (half, BreakerEvent.PROBE_SUCCESS)
    ]
    assert {s for s, _ in TRANSITIONS} == set(BreakerState)


def test_events_outside_the_table_are_bugs(clock: FakeClock) -> None:
    b = breaker(clock)
    with pytest.raises(BreakerError, match="PROBE_SUCCESS is not allowed in CLOSED"):
        b._fire(BreakerEvent.PROBE_SUCCESS)
    assert b.state is BreakerState.CLOSED


def test_only_consecutive_failures_trip(clock: FakeClock) -> None:
    b = breaker(clock, failures=3)
    fail(b)
    fail(b)
    succeed(b)  # the judge answered: the count starts again
    assert (b.state, b.failures) == (BreakerState.CLOSED, 0)
    fail(b)
    fail(b)
    assert (b.state, b.failures) == (BreakerState.CLOSED, 2)
    fail(b)
    assert (b.state, b.failures) == (BreakerState.OPEN, 3)


def test_open_refuses_until_open_s_then_one_probe_closes(
    clock: FakeClock, held: list[AbstractContextManager[None]]
) -> None:
    b = breaker(clock, failures=2, open_s=30)
    fail(b)
    fail(b)
    assert refused(b) == "judge circuit open after 2 consecutive failures; retrying in 30s"
    clock.advance(3.5)
    assert refused(b).endswith("retrying in 27s")
    clock.advance(26.5)
    start(b, held)  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert refused(b).endswith("a probe call is under way")
    settle(held, None)
    assert (b.state, b.failures) == (BreakerState.CLOSED, 0)
    succeed(b)


def test_failed_probe_opens_again_for_open_s(
    clock: FakeClock, held: list[AbstractContextManager[None]]
) -> None:
    b = breaker(clock, failures=1, open_s=10)
    fail(b)
    clock.advance(10)
    start(b, held)
    clock.advance(2)  # the probe took 2 s to fail: the new timer starts when it ended
    settle(held, RuntimeError("judge timed out"))
    assert (b.state, b.failures) == (BreakerState.OPEN, 2)
    assert refused(b) == "judge circuit open after 2 consecutive failures; retrying in 10s"
    clock.advance(9.9)
    refused(b)
    clock.advance(0.1)
    succeed(b)
    assert b.state is BreakerState.CLOSED


def test_cancelled_probe_lets_the_next_call_probe(
    clock: FakeClock, held: list[AbstractContextManager[None]]
) -> None:
    b = breaker(clock, failures=1, open_s=10)
    fail(b)
    clock.advance(11)
    start(b, held)
    settle(held, asyncio.CancelledError())  # the client hung up mid-probe
    assert (b.state, b.failures) == (BreakerState.OPEN, 1)
    start(b, held)  # no new wait: the old timer has run out
    assert b.state is BreakerState.HALF_OPEN
    settle(held, None)
    assert b.state is BreakerState.CLOSED


def test_late_outcomes_do_not_move_an_open_circuit(
    clock: FakeClock, held: list[AbstractContextManager[None]]
) -> None:
    b = breaker(clock, failures=2, open_s=10)
    start(b, held)  # admitted while closed, ends after the trip
    start(b, held)
    fail(b)
    fail(b)
    settle(held, None)
    settle(held, RuntimeError("late"))
    assert (b.state, b.failures) == (BreakerState.OPEN, 2)
    clock.advance(10)
    start(b, held)  # the probe
    refused(b)
    settle(held, None)
    assert b.state is BreakerState.CLOSED


def test_cancelled_call_while_closed_counts_nothing(clock: FakeClock) -> None:
    b = breaker(clock, failures=1)
    with pytest.raises(asyncio.CancelledError), b.call():
        raise asyncio.CancelledError
    assert (b.state, b.failures) == (BreakerState.CLOSED, 0)


def test_registry_shares_per_endpoint_and_is_bounded(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock, max_endpoints=2)
    config = BreakerConfig()
    first = registry.breaker(ENDPOINT, config)
    same = Endpoint("http://127.0.0.1:9000/v1", "judge-1")  # equal by value
    assert first is not None and first is registry.breaker(same, config)
    other_model = registry.breaker(Endpoint(ENDPOINT.base_url, "judge-2"), config)
    assert other_model is not None and other_model is not first
    assert registry.breaker(ENDPOINT, BreakerConfig(failures=0)) is None  # off: no breaker
    # The latest settings apply to the shared breaker (a reload changes them), state kept.
    assert first.config.failures == 5
    assert registry.breaker(ENDPOINT, BreakerConfig(failures=2)) is first
    assert first.config.failures == 2
    # Past the bound the least recently asked for goes (judge-2 here).
    registry.breaker(Endpoint("http://other:1/v1", "j"), config)
    assert len(registry) == 2
    assert registry.breaker(ENDPOINT, config) is first
    assert registry.breaker(Endpoint(ENDPOINT.base_url, "judge-2"), config) is not other_model


def test_logs_open_and_close_naming_host_and_model_only(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="extproc.policies.tool_call_judge.breaker")
    secret = "sk-url-secret-42"
    endpoint = Endpoint(f"https://user:{secret}@judge.example:8443/v1?key={secret}", "judge-x")
    b = CircuitBreaker(endpoint, BreakerConfig(failures=2, open_s=5), clock)
    for _ in range(2):
        fail(b)
    refused(b)
    clock.advance(5)
    succeed(b)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            logging.WARNING,
            "judge judge-x at judge.example:8443: circuit opened after 2 consecutive failures;"
            " the judge is not called for 5s (the policies' on_judge_error applies)",
        ),
        (
            logging.INFO,
            "judge judge-x at judge.example:8443: probe call succeeded after 2 consecutive"
            " failures; circuit closed",
        ),
    ]
    assert secret not in caplog.text


def test_breaker_config() -> None:
    assert BreakerConfig() == BreakerConfig(failures=5, open_s=30)
    for bad in ({"failures": -1}, {"open_s": 0}, {"open_s": 7200}, {"surprise": 1}):
        with pytest.raises(ValidationError):
            BreakerConfig.model_validate(bad)
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker(ENDPOINT, BreakerConfig(failures=0), FakeClock())
