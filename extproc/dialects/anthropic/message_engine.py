"""The policy engine for a non-streaming Anthropic Message: text blocks rewritten,
tool_use blocks decided, block messages placed before any allowed tool_use, and
`stop_reason` `end_turn` when every call was blocked."""

from __future__ import annotations

from typing import Any

import orjson

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.engine.tools import watch_calls
from extproc.engine.whole import decide, observe, rewrite_text


async def process_message(body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
    if not isinstance(body, dict):
        return body
    observe(chain, request, body)
    content = body.get("content")
    if not isinstance(content, list):
        return body
    others: list[Any] = []
    tools: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text = rewrite_text(chain, request, block["text"])
            others.append(block if text == block["text"] else {**block, "text": text})
        elif kind == "tool_use" and (chain.gates_tool_calls or chain.watches_tool_calls):
            tools.append(block)
            if not chain.gates_tool_calls:
                others.append(block)  # only watched: it keeps its place
        else:
            others.append(block)
    new_content = list(others)
    stop_reason = body.get("stop_reason")
    calls = [
        ToolCall(
            id=str(t.get("id", "")),
            name=str(t.get("name", "")),
            arguments=t["input"] if isinstance(t.get("input"), dict) else {},
            raw_arguments=orjson.dumps(t.get("input", {})).decode(),
            index=n,
        )
        for n, t in enumerate(tools)
    ]
    watch_calls(chain, request, calls)
    if tools and chain.gates_tool_calls:
        messages, allowed = await decide(chain, request, calls, tools)
        new_content += [{"type": "text", "text": m} for m in messages] + allowed
        if stop_reason == "tool_use" and not allowed:
            stop_reason = "end_turn"
    if len(new_content) == len(content) and all(
        a is b for a, b in zip(new_content, content, strict=True)
    ):
        return body
    return {**body, "content": new_content, "stop_reason": stop_reason}
