"""Anthropic Messages API: read a request, render a plan as JSON or as SSE events."""

from __future__ import annotations

from typing import Any

import orjson

from .scenario import (
    Plan,
    ScenarioInput,
    ToolChoice,
    ToolSpec,
    dumps_compact,
    estimate_tokens,
    split_text,
)

# x-mock-error value -> (HTTP status, error type, message)
_FAULTS: dict[str, tuple[int, str, str]] = {
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "429": (429, "rate_limit_error", "Number of requests has exceeded your rate limit"),
    "500": (500, "api_error", "Internal server error"),
}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def invalid_request(message: str, param: str | None = None) -> dict[str, Any]:
    del param  # Anthropic names the field inside the message
    return error_body("invalid_request_error", message)


def fault_error(kind: str) -> tuple[int, dict[str, Any]]:
    """The status and body for an ``x-mock-error`` value (KeyError if unknown)."""
    fault = _FAULTS[kind]
    return (fault[0], error_body(fault[1], fault[2]))


def validate(body: Any) -> str | None:
    """The error message for an invalid request body, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    if not isinstance(body["messages"], list):
        return "messages: Input should be a valid list"
    if not body["messages"]:
        return "messages: at least one message is required"
    return None


def _block_text(content: Any, kinds: tuple[str, ...] = ("text",)) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") in kinds:
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
            elif block.get("type") == "tool_result":
                parts.append(_block_text(block.get("content")))
    return "\n".join(parts)


def _tools(body: dict[str, Any]) -> tuple[ToolSpec, ...]:
    tools = body.get("tools")
    out = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            schema = tool.get("input_schema")
            if isinstance(schema, dict):
                out.append(ToolSpec(name=tool["name"], schema=schema))
    return tuple(out)


def scenario_input(body: dict[str, Any], seed: str) -> ScenarioInput:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last_user.get("content")
    has_result = isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )
    choice = body.get("tool_choice")
    choice = choice if isinstance(choice, dict) else {}
    kind = choice.get("type", "auto")
    tool_choice: ToolChoice = "none" if kind == "none" else "any" if kind == "any" else "auto"
    thinking = body.get("thinking")
    input_size = dumps_compact([body.get("system"), body["messages"], body.get("tools")])
    return ScenarioInput(
        text=_block_text(content),
        seed=seed,
        tools=_tools(body),
        tool_choice=tool_choice,
        forced_tool=choice.get("name") if kind == "tool" else None,
        parallel_tool_calls=not choice.get("disable_parallel_tool_use", False),
        tool_result=_block_text(content, ("tool_result",)) if has_result else None,
        thinking=isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"),
        max_tokens=body["max_tokens"],
        input_tokens=estimate_tokens(input_size),
        tool_id_prefix="toolu_01",
    )


def _usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.usage.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _content(plan: Plan) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if plan.thinking is not None:
        blocks.append({"type": "thinking", "thinking": plan.thinking, "signature": plan.signature})
    if plan.text_chunks or not plan.tool_calls:
        blocks.append({"type": "text", "text": plan.text})
    for call in plan.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


def render_message(plan: Plan, *, msg_id: str, model: str) -> dict[str, Any]:
    """The non-streaming Message object."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(plan),
        "stop_reason": plan.stop_reason,
        "stop_sequence": None,
        "usage": _usage(plan, plan.usage.output_tokens),
    }


def _deltas(block: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    kind = block["type"]
    if kind == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": t} for t in plan.thinking_chunks or ()]
        return [*pieces, {"type": "signature_delta", "signature": plan.signature}]
    if kind == "text":
        return [{"type": "text_delta", "text": t} for t in plan.text_chunks]
    fragments = ["", *split_text(dumps_compact(block["input"]), (4, 7, 5))]
    return [{"type": "input_json_delta", "partial_json": f} for f in fragments]


def _empty_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block["type"]
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind == "text":
        return {"type": "text", "text": ""}
    return {**block, "input": {}}


def render_stream(
    plan: Plan,
    *,
    msg_id: str,
    model: str,
    line_ending: str = "\n",
    midstream_error: bool = False,
) -> list[bytes]:
    """The SSE events of a streamed answer, one byte string per event."""
    start = {**render_message(plan, msg_id=msg_id, model=model), "content": []}
    start.update(stop_reason=None, usage=_usage(plan, 1))
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    first_delta: int | None = None
    for index, block in enumerate(_content(plan)):
        head = {"type": "content_block_start", "index": index}
        events.append(("content_block_start", {**head, "content_block": _empty_block(block)}))
        for delta in _deltas(block, plan):
            body = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(("content_block_delta", body))
            if first_delta is None:
                first_delta = len(events)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if midstream_error:
        events = [*events[: first_delta or len(events)], ("error", OVERLOADED)]
    else:
        usage = _usage(plan, plan.usage.output_tokens)
        del usage["service_tier"]
        delta = {"stop_reason": plan.stop_reason, "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
    le = line_ending.encode()
    return [b"event: " + n.encode() + le + b"data: " + orjson.dumps(d) + le + le for n, d in events]
