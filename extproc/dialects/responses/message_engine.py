"""The policy engine for a non-streaming Responses API `response`: output_text parts
rewritten (their logprobs dropped when changed), client tool call items decided, a
blocked call replaced in place by a message item saying why. Reasoning items and
refusals are left alone. The same object comes back when nothing changed."""

from __future__ import annotations

from typing import Any

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import BlockResponse, ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.responses import items as itm
from extproc.engine.tools import ToolGate, watch_calls
from extproc.engine.whole import observe, rewrite_text


def rewritten_message(
    item: dict[str, Any], chain: ResponsePolicies, request: ApiRequest
) -> dict[str, Any]:
    """A message item with its output_text parts through the rewriters (the same item
    when nothing changed)."""
    content = item.get("content")
    if item.get("type") != "message" or not isinstance(content, list):
        return item
    texts: dict[int, str] = {}
    for index, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "output_text":
            text = part.get("text")
            if isinstance(text, str):
                new = rewrite_text(chain, request, text)
                if new != text:
                    texts[index] = new
    return itm.with_texts(item, texts) if texts else item


async def process_message(body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
    if not isinstance(body, dict):
        return body
    observe(chain, request, body)
    output = body.get("output")
    if not isinstance(output, list):
        return body
    new_output = [
        rewritten_message(item, chain, request) if isinstance(item, dict) else item
        for item in output
    ]
    calls: list[tuple[int, ToolCall]] = []
    if chain.gates_tool_calls or chain.watches_tool_calls:
        for position, item in enumerate(new_output):
            if isinstance(item, dict) and item.get("type") in itm.GATED_ITEMS:
                call = itm.tool_call(item, len(calls))
                if call is not None:
                    calls.append((position, call))
        watch_calls(chain, request, [call for _, call in calls])
    if calls and chain.gates_tool_calls:
        gate = ToolGate(chain, request)
        for _, call in calls:
            gate.submit(call)
        decisions = await gate.results()
        stop_all = next((d for d in decisions if isinstance(d, BlockResponse)), None)
        dropped: set[int] = set()
        for (position, _), decision in zip(calls, decisions, strict=True):
            key = itm.item_key(new_output[position])
            if stop_all is not None:
                # The first call's place says why; the other calls go.
                if position == calls[0][0]:
                    new_output[position] = itm.message_item(key, stop_all.message)
                else:
                    dropped.add(position)
            elif decision is not None:
                new_output[position] = itm.message_item(key, decision.message)
        new_output = [item for n, item in enumerate(new_output) if n not in dropped]
    if len(new_output) == len(output) and all(
        a is b for a, b in zip(new_output, output, strict=True)
    ):
        return body
    return {**body, "output": new_output}
