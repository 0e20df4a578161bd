"""Policy engine for non-streaming responses (an Anthropic Message, an OpenAI
ChatCompletion). Same rewriters, same tool gate, same ordering rules as the stream
engines, so a policy sees the same content whether or not the response streams.
Returns the very same object when nothing changed, so its original bytes are sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.apis.kind import ApiKind
from extproc.engine.text import TextPipeline
from extproc.engine.tools import T, ToolGate, parse_arguments, split_decisions
from extproc.policies.base import ApiRequest, PolicyChain, ToolCall


def _rewrite(chain: PolicyChain, request: ApiRequest, text: str) -> str:
    if not chain.rewriters:
        return text
    return TextPipeline(chain.text_rewriters(request)).rewrite_all(text)


async def _decide(
    chain: PolicyChain, request: ApiRequest, calls: list[ToolCall], items: list[T]
) -> tuple[list[str], list[T]]:
    """Decide every call (concurrently): block messages, and the items let through."""
    gate = ToolGate(chain, request)
    for call in calls:
        gate.submit(call)
    return split_decisions(items, await gate.results())


async def process_response(body: Any, chain: PolicyChain, request: ApiRequest) -> Any:
    if not isinstance(body, dict):
        return body
    for policy in chain.observers:
        policy.observe("response", body, request)
    if request.api is ApiKind.ANTHROPIC:
        return await _anthropic(body, chain, request)
    return await _openai(body, chain, request)


async def _anthropic(body: dict[str, Any], chain: PolicyChain, request: ApiRequest) -> Any:
    content = body.get("content")
    if not isinstance(content, list):
        return body
    others: list[Any] = []
    tools: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text = _rewrite(chain, request, block["text"])
            others.append(block if text == block["text"] else {**block, "text": text})
        elif kind == "tool_use" and chain.gates:
            tools.append(block)
        else:
            others.append(block)
    new_content = list(others)
    stop_reason = body.get("stop_reason")
    if tools:
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
        messages, allowed = await _decide(chain, request, calls, tools)
        new_content += [{"type": "text", "text": m} for m in messages] + allowed
        if stop_reason == "tool_use" and not allowed:
            stop_reason = "end_turn"
    if len(new_content) == len(content) and all(
        a is b for a, b in zip(new_content, content, strict=True)
    ):
        return body
    return {**body, "content": new_content, "stop_reason": stop_reason}


async def _openai(body: dict[str, Any], chain: PolicyChain, request: ApiRequest) -> Any:
    choices = body.get("choices")
    if not isinstance(choices, list):
        return body
    new_choices = [await _openai_choice(c, chain, request) for c in choices]
    if all(a is b for a, b in zip(new_choices, choices, strict=True)):
        return body
    return {**body, "choices": new_choices}


async def _openai_choice(choice: Any, chain: PolicyChain, request: ApiRequest) -> Any:
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return choice
    new = dict(message)
    finish = choice.get("finish_reason")
    if isinstance(message.get("content"), str):
        new["content"] = _rewrite(chain, request, message["content"])
    calls_in = message.get("tool_calls")
    if chain.gates and isinstance(calls_in, list) and calls_in:
        calls = []
        for n, item in enumerate(calls_in):
            function = item.get("function", {}) if isinstance(item, dict) else {}
            raw = str(function.get("arguments") or "")
            calls.append(
                ToolCall(
                    str(item.get("id", "")),
                    str(function.get("name", "")),
                    parse_arguments(raw),
                    raw,
                    index=n,
                )
            )
        messages, allowed = await _decide(chain, request, calls, calls_in)
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
