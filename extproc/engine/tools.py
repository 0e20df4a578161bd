"""Tool-call gate: decisions for complete tool calls, made concurrently, read in order;
and the watch: the same calls shown to shadow policies without holding anything."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import BlockResponse, BlockToolCall, ToolCall, ToolOutcome
from extproc.core.request import ApiRequest

log = logging.getLogger("extproc.engine")

T = TypeVar("T")
POLICY_FAILED = "Tool call '{tool}' was blocked: a gateway policy failed while reviewing it."


def parse_arguments(raw: str) -> dict[str, Any]:
    """The arguments object; {} when empty or not a JSON object (policies still get raw)."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class ToolGate:
    """Starts a decision as soon as a call is complete, so parallel calls are judged
    concurrently while the rest of the response still streams in."""

    def __init__(self, chain: ResponsePolicies, request: ApiRequest) -> None:
        self.chain = chain
        self.request = request
        self.tasks: list[asyncio.Task[ToolOutcome]] = []

    def submit(self, call: ToolCall) -> None:
        self.tasks.append(asyncio.create_task(self._decide(call)))

    async def _decide(self, call: ToolCall) -> ToolOutcome:
        try:
            return await self.chain.decide_tool_call(call, self.request)
        except Exception:
            # Fail closed: a call no policy could review does not reach the client.
            log.exception("policy failed on tool call %r", call.name)
            return BlockToolCall(POLICY_FAILED.format(tool=call.name))

    async def results(self) -> list[ToolOutcome]:
        return list(await asyncio.gather(*self.tasks))

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


# Shadow decisions outlive their request (a response often ends right after its tool
# call): their tasks are kept here, each bounded by the chain's own shadow time limit.
_WATCHING: set[asyncio.Task[None]] = set()


def watch_calls(chain: ResponsePolicies, request: ApiRequest, calls: list[ToolCall]) -> None:
    """Show complete calls to the chain's shadow policies, in the background: the
    response goes on as it came, whatever they decide (they only record it)."""
    if not chain.watches_tool_calls:
        return
    for call in calls:
        task = asyncio.create_task(chain.watch_tool_call(call, request))
        _WATCHING.add(task)
        task.add_done_callback(_watch_done)


def _watch_done(task: asyncio.Task[None]) -> None:
    _WATCHING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # The chain records a failing policy itself: this is a failure around it.
        log.error("showing a tool call to shadow policies failed", exc_info=task.exception())


async def drain_watching(timeout_s: float) -> None:
    """Let shadow decisions still under way finish (at shutdown, before the policies'
    clients close), for at most `timeout_s`."""
    if _WATCHING:
        await asyncio.wait(set(_WATCHING), timeout=timeout_s)


def split_decisions(items: list[T], decisions: list[ToolOutcome]) -> tuple[list[str], list[T]]:
    """The messages to show in place of blocked calls, and the calls let through. A
    BlockResponse wins over everything: its message alone, and no call."""
    stop_all = next((d for d in decisions if isinstance(d, BlockResponse)), None)
    if stop_all is not None:
        return [stop_all.message], []
    messages = [d.message for d in decisions if isinstance(d, BlockToolCall)]
    return messages, [item for item, d in zip(items, decisions, strict=True) if d is None]
