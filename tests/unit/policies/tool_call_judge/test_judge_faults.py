"""A judge that is dead, slow, failing or talking nonsense: every decision is taken within
`timeout_s` (retries included), the fail mode applies and is recorded, and the circuit
breaker stops calling a judge that keeps failing until a probe finds it back.

The judge is the mock LLM over real HTTP (its JUDGE_* markers and x-mock-* headers make it
slow or failing); a dead judge is a closed port, or a server that hangs up on every
connection and counts them. The breaker's clock is injected: `open_s` passes at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from extproc.core.audit import Action, Decision, DecisionLog
from extproc.core.decisions import ToolCall
from extproc.mock_llm.server import RECORDS_KEY
from extproc.policies.base import PolicyChain
from extproc.policies.tool_call_judge import ToolCallJudgePolicy
from extproc.policies.tool_call_judge.breaker import BreakerRegistry, BreakerState
from extproc.policies.tool_call_judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeContext,
    JudgeError,
)
from tests.helpers.judge import (
    JUDGE_KEY,
    JUDGE_MODEL,
    PolicyFactory,
    bash,
    judge_records,
    judged_request,
)
from tests.unit.policies.tool_call_judge.fake_clock import FakeClock

Mock = tuple[str, web.Application]

# What a decision may take beyond `timeout_s`: scheduling and the HTTP stack, not retries.
SLACK_S = 0.5
BREAKER_LOGGER = "extproc.policies.tool_call_judge.breaker"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(clock: FakeClock) -> BreakerRegistry:
    return BreakerRegistry(clock=clock)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused, and nobody else gets it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class HangUp:
    """A judge that accepts every connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        await writer.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def hang_up() -> AsyncIterator[HangUp]:
    judge = HangUp()
    server = await asyncio.start_server(judge.handle, "127.0.0.1", 0)
    judge.port = server.sockets[0].getsockname()[1]
    async with server:
        yield judge


async def decide(policy: ToolCallJudgePolicy, call: ToolCall) -> tuple[Decision, float]:
    """The decision the chain records for `call`, and the seconds it took."""
    request = judged_request()
    seen: list[Decision] = []
    request.decisions = DecisionLog(seen.append)
    started = time.perf_counter()
    await PolicyChain([policy]).decide_tool_call(call, request)
    return seen[-1], time.perf_counter() - started


def error_of(decision: Decision) -> str:
    assert decision.judge is not None and decision.judge.probability is None
    assert decision.judge.error is not None
    return decision.judge.error


# -- each failure within timeout_s, fail mode applied and recorded ------------------------


@pytest.mark.parametrize(
    ("on_error", "action"),
    [("block", Action.ERROR_FAIL_CLOSED), ("allow", Action.ERROR_FAIL_OPEN)],
)
async def test_dead_judge_fails_fast_and_records_the_fail_mode(
    make: PolicyFactory, closed_port: int, on_error: str, action: Action
) -> None:
    policy = make(
        judge_base_url=f"http://127.0.0.1:{closed_port}/v1",
        judge_timeout_s=2,
        judge_retries=3,
        on_judge_error=on_error,
    )
    decision, seconds = await decide(policy, bash("ls"))
    assert decision.action is action and seconds < 2 + SLACK_S
    assert error_of(decision) == "judge connection failed (ConnectError) (after 4 attempts)"
    assert (decision.message is not None) == (on_error == "block")


@pytest.mark.parametrize(
    ("marker", "timeout_s", "reason"),
    [
        ("JUDGE_SLOW", 0.5, "judge timed out after 0.5s"),
        ("JUDGE_PROSE", 5, "judge answer had no JSON verdict"),
    ],
)
async def test_slow_or_garbage_judge_is_asked_once(
    make: PolicyFactory, mock: Mock, marker: str, timeout_s: float, reason: str
) -> None:
    # A timeout has spent the whole budget; a garbage answer would come back the same.
    policy = make(judge_timeout_s=timeout_s, judge_retries=3)
    decision, seconds = await decide(policy, bash(f"echo {marker}"))
    assert decision.action is Action.ERROR_FAIL_CLOSED and error_of(decision) == reason
    assert seconds < timeout_s + SLACK_S
    assert len(judge_records(mock[1])) == 1


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_5xx_retried_up_to_retries(make: PolicyFactory, mock: Mock, retries: int) -> None:
    policy = make(judge_retries=retries)
    decision, seconds = await decide(policy, bash("echo JUDGE_500"))
    attempts = retries + 1
    suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
    assert error_of(decision) == f"judge returned HTTP 500{suffix}"
    assert len(judge_records(mock[1])) == attempts and seconds < 5 + SLACK_S


async def failed_verdict(mock: Mock, headers: dict[str, str], **config: Any) -> str:
    """The reason a client sending the mock these fault headers fails with."""
    mock[1][RECORDS_KEY].clear()
    judge = JudgeConfig(base_url=mock[0], model=JUDGE_MODEL, **config)
    client = JudgeClient(judge, extra_headers=headers)
    try:
        with pytest.raises(JudgeError) as info:
            await client.verdict(bash("ls"), JudgeContext())
    finally:
        await client.aclose()
    return info.value.reason


async def test_429_is_retried(mock: Mock) -> None:
    reason = await failed_verdict(mock, {"x-mock-error": "429"}, retries=1)
    assert reason == "judge returned HTTP 429 (after 2 attempts)"
    assert len(judge_records(mock[1])) == 2


async def test_one_deadline_over_all_attempts(mock: Mock) -> None:
    # Each answer takes 0.3 s and is a 500: per-attempt timeouts would let four attempts
    # run for over a second; one deadline stops the second attempt at 0.5 s.
    headers = {"x-mock-stall-ms": "300", "x-mock-error": "500"}
    started = time.perf_counter()
    reason = await failed_verdict(mock, headers, retries=3, timeout_s=0.5)
    assert reason == "judge timed out after 0.5s"
    assert 0.5 <= time.perf_counter() - started < 0.5 + SLACK_S
    assert len(judge_records(mock[1])) == 2


# -- the circuit breaker ------------------------------------------------------------------


async def test_answers_that_make_no_sense_do_not_open_the_circuit(
    make: PolicyFactory, mock: Mock, breakers: BreakerRegistry
) -> None:
    """Garbage from a working judge is the request's doing (a prompt can provoke it):
    the fail mode applies, but one caller cannot open the circuit for everyone."""
    policy = make(breakers=breakers, judge_retries=0, breaker={"failures": 2, "open_s": 30})
    assert policy.breaker is not None
    for _ in range(4):
        decision, _ = await decide(policy, bash("echo JUDGE_PROSE"))
        assert decision.action is Action.ERROR_FAIL_CLOSED
    assert policy.breaker.state is BreakerState.CLOSED
    assert len(judge_records(mock[1])) == 4  # asked every time


@pytest.mark.parametrize(("marker", "timeout_s"), [("JUDGE_500", 5), ("JUDGE_SLOW", 0.3)])
async def test_breaker_opens_after_failures_and_a_probe_closes_it(
    make: PolicyFactory,
    mock: Mock,
    clock: FakeClock,
    breakers: BreakerRegistry,
    caplog: pytest.LogCaptureFixture,
    marker: str,
    timeout_s: float,
) -> None:
    caplog.set_level(logging.INFO, logger=BREAKER_LOGGER)
    options: dict[str, Any] = {
        "breakers": breakers,
        "judge_timeout_s": timeout_s,
        "judge_retries": 0,
        "breaker": {"failures": 3, "open_s": 30},
    }
    # Two policies (two chains, say) on one judge share its breaker.
    strict = make(name="strict", **options)
    lenient = make(name="lenient", on_judge_error="allow", **options)
    assert strict.breaker is lenient.breaker and strict.breaker is not None
    for policy in (strict, lenient, strict):
        decision, seconds = await decide(policy, bash(f"echo {marker}"))
        assert decision.action in (Action.ERROR_FAIL_CLOSED, Action.ERROR_FAIL_OPEN)
        assert seconds < timeout_s + SLACK_S
    assert strict.breaker.state is BreakerState.OPEN
    asked = len(judge_records(mock[1]))
    assert asked == 3

    # Open: the judge is not called, the fail mode applies at once and says why.
    clock.advance(3)
    closed, _ = await decide(strict, bash("ls"))
    opened, _ = await decide(lenient, bash("ls"))
    assert (closed.action, opened.action) == (Action.ERROR_FAIL_CLOSED, Action.ERROR_FAIL_OPEN)
    reason = "judge circuit open after 3 consecutive failures; retrying in 27s"
    assert error_of(closed) == error_of(opened) == reason
    assert closed.message is not None and reason in closed.message
    assert closed.judge is not None and closed.judge.seconds < 0.1
    assert len(judge_records(mock[1])) == asked

    # After open_s one probe goes through; the judge is back, so it closes the circuit.
    clock.advance(27)
    probed, _ = await decide(lenient, bash("ls"))
    assert probed.action is Action.ALLOW and probed.judge and probed.judge.error is None
    assert len(judge_records(mock[1])) == asked + 1
    assert strict.breaker.state is BreakerState.CLOSED
    again, _ = await decide(strict, bash("rm -rf /"))
    assert again.action is Action.BLOCK_TOOL_CALL
    # One warning when it opened, one info when it closed, naming host and model.
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == BREAKER_LOGGER]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    host = mock[0].split("//")[1].split("/")[0]
    assert lines[0][1].startswith(f"judge {JUDGE_MODEL} at {host}: circuit opened after 3 ")
    assert lines[1][1].endswith("circuit closed")


async def test_dead_judge_gets_no_calls_while_open(
    make: PolicyFactory,
    hang_up: HangUp,
    clock: FakeClock,
    breakers: BreakerRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("JUDGE_FAULT_KEY", JUDGE_KEY)
    policy = make(
        breakers=breakers,
        judge_base_url=f"http://127.0.0.1:{hang_up.port}/v1",
        judge_api_key_env="JUDGE_FAULT_KEY",
        judge_timeout_s=2,
        judge_retries=1,
        breaker={"failures": 2, "open_s": 10},
    )
    for _ in range(2):
        decision, seconds = await decide(policy, bash("ls"))
        error = error_of(decision)  # ReadError or RemoteProtocolError: a race
        assert error.startswith("judge connection failed (")
        assert error.endswith("(after 2 attempts)")
        assert seconds < 2 + SLACK_S
    assert hang_up.connections == 4  # two judgements, one retry each
    for _ in range(5):
        decision, _ = await decide(policy, bash("ls"))
        assert error_of(decision).startswith("judge circuit open after 2 consecutive")
    assert hang_up.connections == 4
    # Still dead at the probe: open again, for open_s from now.
    clock.advance(10)
    decision, _ = await decide(policy, bash("ls"))
    assert error_of(decision).startswith("judge connection failed")
    assert hang_up.connections == 6
    decision, _ = await decide(policy, bash("ls"))
    assert error_of(decision) == "judge circuit open after 3 consecutive failures; retrying in 10s"
    assert JUDGE_KEY not in caplog.text and JUDGE_KEY not in (decision.message or "")


async def test_breaker_off_calls_the_judge_every_time(
    make: PolicyFactory, mock: Mock, breakers: BreakerRegistry
) -> None:
    policy = make(breakers=breakers, judge_retries=0, breaker={"failures": 0})
    assert policy.breaker is None and len(breakers) == 0
    for _ in range(7):
        decision, _ = await decide(policy, bash("echo JUDGE_500"))
        assert error_of(decision) == "judge returned HTTP 500"
    assert len(judge_records(mock[1])) == 7
