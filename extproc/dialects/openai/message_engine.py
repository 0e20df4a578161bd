"""The policy engine for a non-streaming chat completion: each choice's content
rewritten, its tool calls decided, a blocked call's message appended to the content, and
`finish_reason` `stop` when no call is left."""

from __future__ import annotations

from typing import Any

from extproc.core.chain import ResponsePolicies
from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.engine.tools import parse_arguments, watch_calls
from extproc.engine.whole import decide, observe, rewrite_text


async def process_message(body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
    if not isinstance(body, dict):
        return body
    observe(chain, request, body)
    choices = body.get("choices")
    if not isinstance(choices, list):
        return body
    new_choices = [await _choice(c, chain, request) for c in choices]
    if all(a is b for a, b in zip(new_choices, choices, strict=True)):
        return body
    return {**body, "choices": new_choices}


async def _choice(choice: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return choice
    new = dict(message)
    finish = choice.get("finish_reason")
    if isinstance(message.get("content"), str):
        new["content"] = rewrite_text(chain, request, message["content"])
    calls_in = message.get("tool_calls")
    if not (chain.gates_tool_calls or chain.watches_tool_calls):
        calls_in = None
    if isinstance(calls_in, list) and calls_in:
        calls = []
        for n, item in enumerate(calls_in):
            entry: dict[str, Any] = item if isinstance(item, dict) else {}
            function = entry.get("function")
            if not isinstance(function, dict):
                function = {}
            raw = str(function.get("arguments") or "")
            calls.append(
                ToolCall(
                    str(entry.get("id", "")),
                    str(function.get("name", "")),
                    parse_arguments(raw),
                    raw,
                    index=n,
                )
            )
        watch_calls(chain, request, calls)
        messages, allowed = (
            await decide(chain, request, calls, calls_in)
            if chain.gates_tool_calls
            else ([], calls_in)
        )
        if messages:
            text = "\n\n".join(messages)
            new["content"] = f"{new['content']}\n\n{text}" if new.get("content") else text
        if allowed:
            new["tool_calls"] = allowed
        else:
            new.pop("tool_calls", None)
            if finish == "tool_calls":
                finish = "stop"
        if len(allowed) == len(calls_in):
            new["tool_calls"] = calls_in
    if new == message and finish == choice.get("finish_reason"):
        return choice
    return {**choice, "message": new, "finish_reason": finish}
