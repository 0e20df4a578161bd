"""OpenAI Chat Completions API: read a request, render a plan as JSON or as SSE chunks."""

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

FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}
SYSTEM_FINGERPRINT = "fp_mock"

# x-mock-error value -> (HTTP status, message, type, code)
_FAULTS: dict[str, tuple[int, str, str, str | None]] = {
    "overloaded": (
        503,
        "The server is overloaded or not ready yet.",
        "server_error",
        "server_overloaded",
    ),
    "429": (429, "Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    "500": (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
}
MIDSTREAM_ERROR = {
    "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": None}
}
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5")


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def invalid_request(message: str, param: str | None = None) -> dict[str, Any]:
    return error_body(message, "invalid_request_error", param)


def fault_error(kind: str) -> tuple[int, dict[str, Any]]:
    """The status and body for an ``x-mock-error`` value (KeyError if unknown)."""
    fault = _FAULTS[kind]
    return (fault[0], error_body(fault[1], fault[2], None, fault[3]))


def validate(body: Any) -> tuple[str, str | None] | None:
    """(message, param) for an invalid request body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None
    if "model" not in body:
        return "you must provide a model parameter", "model"
    if "messages" not in body:
        return "Missing required parameter: 'messages'.", "messages"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "Invalid 'messages': expected a non-empty array.", "messages"
    return None


def models_list() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "mock"} for m in MODELS]
    return {"object": "list", "data": data}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))


def _tools(body: dict[str, Any]) -> tuple[ToolSpec, ...]:
    tools = body.get("tools")
    out = []
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out.append(ToolSpec(name=fn["name"], schema=params if isinstance(params, dict) else {}))
    return tuple(out)


def _tool_choice(body: dict[str, Any]) -> tuple[ToolChoice, str | None]:
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        return "auto", name if isinstance(name, str) else None
    return ("none" if choice == "none" else "any" if choice == "required" else "auto"), None


def scenario_input(body: dict[str, Any], seed: str) -> ScenarioInput:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    last = messages[-1] if messages else {}
    tool_choice, forced = _tool_choice(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return ScenarioInput(
        text=_text(last_user.get("content")),
        seed=seed,
        tools=_tools(body),
        tool_choice=tool_choice,
        forced_tool=forced,
        parallel_tool_calls=body.get("parallel_tool_calls", True) is not False,
        tool_result=_text(last.get("content")) if last.get("role") == "tool" else None,
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        input_tokens=estimate_tokens(dumps_compact([body["messages"], body.get("tools")])),
        tool_id_prefix="call_",
    )


def _usage(plan: Plan) -> dict[str, Any]:
    prompt, completion = plan.usage.input_tokens, plan.usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def render_completion(plan: Plan, *, cid: str, model: str, created: int) -> dict[str, Any]:
    """The non-streaming chat.completion object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.text if plan.text_chunks or not plan.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": dumps_compact(c.input)},
            }
            for c in plan.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": FINISH_REASONS[plan.stop_reason],
    }
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(plan),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _deltas(plan: Plan) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"content": t} for t in plan.text_chunks]
    for index, call in enumerate(plan.tool_calls):
        fn = {"name": call.name, "arguments": ""}
        deltas.append(
            {"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": fn}]}
        )
        for fragment in split_text(dumps_compact(call.input), (4, 7, 5)):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    return deltas


def render_stream(
    plan: Plan,
    *,
    cid: str,
    model: str,
    created: int,
    include_usage: bool = False,
    line_ending: str = "\n",
    midstream_error: bool = False,
) -> list[bytes]:
    """The SSE events of a streamed answer, one byte string per event, [DONE] last."""
    head: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **({"usage": None} if include_usage else {})}

    payloads: list[Any] = [chunk({"role": "assistant", "content": ""})]
    payloads += [chunk(delta) for delta in _deltas(plan)]
    if midstream_error:
        payloads = [*payloads[:2], MIDSTREAM_ERROR]
    else:
        payloads.append(chunk({}, FINISH_REASONS[plan.stop_reason]))
        if include_usage:
            payloads.append({**head, "choices": [], "usage": _usage(plan)})
    le = line_ending.encode()
    events = [b"data: " + orjson.dumps(p) + le + le for p in payloads]
    if not midstream_error:
        events.append(b"data: [DONE]" + le + le)
    return events
