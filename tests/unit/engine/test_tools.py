"""The tool-call gate (extproc/engine/tools.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from extproc.core.decisions import (
    BlockResponse,
    BlockToolCall,
    ToolCall,
    ToolDecision,
    ToolOutcome,
)
from extproc.core.request import ApiRequest
from extproc.engine.tools import POLICY_FAILED, ToolGate, parse_arguments, split_decisions
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.engine import BlockBash

REQUEST = api_request(anthropic_body())


def call(name: str, index: int = 0) -> ToolCall:
    return ToolCall(f"c{index}", name, {}, "", index)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("   ", {}),
        ("[1, 2]", {}),
        ('"text"', {}),
        ('{"a": ', {}),
    ],
)
def test_parse_arguments(raw: str, parsed: dict[str, object]) -> None:
    assert parse_arguments(raw) == parsed


async def test_decisions_in_call_order() -> None:
    gate = ToolGate(PolicyChain([BlockBash()]), REQUEST)
    for n, name in enumerate(["read", "bash", "write"]):
        gate.submit(call(name, n))
    assert await gate.results() == [None, BlockToolCall("blocked bash"), None]
    assert await ToolGate(PolicyChain([]), REQUEST).results() == []


async def test_calls_are_decided_concurrently() -> None:
    both_started = asyncio.Event()
    running: list[str] = []

    class Rendezvous(Policy[PolicyConfig]):
        gates_tool_calls = True

        async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
            running.append(call.name)
            if len(running) == 2:
                both_started.set()
            # Neither decision ends before the other began: only concurrent work passes.
            await asyncio.wait_for(both_started.wait(), 5)

    gate = ToolGate(PolicyChain([Rendezvous()]), REQUEST)
    gate.submit(call("a", 0))
    gate.submit(call("b", 1))
    assert await gate.results() == [None, None]


async def test_a_failing_policy_blocks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Policy[PolicyConfig]):
        gates_tool_calls = True

        async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> ToolDecision:
            raise RuntimeError("bug")

    gate = ToolGate(PolicyChain([Broken()]), REQUEST)
    gate.submit(call("bash"))
    with caplog.at_level(logging.ERROR, "extproc.engine"):
        assert await gate.results() == [BlockToolCall(POLICY_FAILED.format(tool="bash"))]
    assert "policy failed on tool call 'bash'" in caplog.text


async def test_cancel_stops_pending_decisions() -> None:
    started = asyncio.Event()

    class Slow(Policy[PolicyConfig]):
        gates_tool_calls = True

        async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
            started.set()
            await asyncio.sleep(3600)

    gate = ToolGate(PolicyChain([Slow()]), REQUEST)
    gate.submit(call("x"))
    await asyncio.wait_for(started.wait(), 5)
    gate.cancel()
    (task,) = gate.tasks
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()


def test_split_decisions() -> None:
    items = ["a", "b", "c"]
    assert split_decisions(items, [None, None, None]) == ([], items)
    assert split_decisions(items, [BlockToolCall("x"), None, BlockToolCall("y")]) == (
        ["x", "y"],
        ["b"],
    )
    # A BlockResponse wins over everything: its message alone, and no call.
    decisions: list[ToolOutcome] = [BlockToolCall("x"), BlockResponse("stop"), None]
    assert split_decisions(items, decisions) == (["stop"], [])
