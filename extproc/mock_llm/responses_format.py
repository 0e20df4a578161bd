"""OpenAI Responses API (`POST /v1/responses`): read a request, render a plan as a response.

Streaming lives in :mod:`responses_stream`; both build on :class:`Rendering` and the
item builders here, so a streamed answer ends with exactly the items the JSON one has.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from . import openai_format
from .scenario import Plan, ScenarioInput, ToolChoice, ToolSpec, dumps_compact, estimate_tokens

MIN_OUTPUT_TOKENS = 16  # the real API rejects smaller max_output_tokens
DEFAULT_TEXT = {"format": {"type": "text"}, "verbosity": "medium"}
# A freeform (custom) tool takes raw text, not JSON. Giving it a `command` string lets
# build_arguments pick the prompt's backticked snippet, which becomes the raw input.
CUSTOM_TOOL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"command": {}}}
CUSTOM_INPUT_KEY = "command"

# Same fault kinds, statuses and bodies as Chat Completions: it is the same API platform.
fault_error = openai_format.fault_error


def invalid_request(
    message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return openai_format.error_body(message, "invalid_request_error", param, code)


def _kind(value: Any) -> str:
    """How the real API names a JSON value's type in its error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _missing(param: str) -> tuple[str, str, str]:
    return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"


def _wrong_type(param: str, expected: str, value: Any) -> tuple[str, str, str]:
    message = f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead."
    return message, param, "invalid_type"


def validate(body: Any) -> tuple[str, str | None, str | None] | None:
    """(message, param, code) for an invalid request body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None, None
    if "model" not in body:
        return _missing("model")
    if not isinstance(body["model"], str):
        return _wrong_type("model", "a string", body["model"])
    inp = body.get("input")
    if inp is None and "prompt" not in body:  # a stored prompt template may carry the input
        return _missing("input")
    if inp is not None and not isinstance(inp, str | list):
        return _wrong_type("input", "one of a string or array of input items", inp)
    for i, item in enumerate(inp if isinstance(inp, list) else []):
        if not isinstance(item, dict):
            return _wrong_type(f"input[{i}]", "an input item object", item)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return _wrong_type("tools", "an array", tools)
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            return _wrong_type(f"tools[{i}]", "an object", tool)
        if tool.get("type") in ("function", "custom") and not isinstance(tool.get("name"), str):
            return _missing(f"tools[{i}].name")
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            return _wrong_type("max_output_tokens", "an integer", limit)
        if limit < MIN_OUTPUT_TOKENS:
            message = (
                "Invalid 'max_output_tokens': integer below minimum value. "
                f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
            )
            return message, "max_output_tokens", "integer_below_min_value"
    return None


def _text(content: Any) -> str:
    """The text of message content or of a tool output: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [
        p.get("text")
        for p in content
        if isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
    ]
    return "\n".join(p for p in parts if isinstance(p, str))


def _is_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and "role" in item


def _tools(body: dict[str, Any]) -> tuple[ToolSpec, ...]:
    out = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        if tool.get("type") == "function":
            params = tool.get("parameters")
            out.append(ToolSpec(tool["name"], params if isinstance(params, dict) else {}))
        elif tool.get("type") == "custom":
            out.append(ToolSpec(tool["name"], CUSTOM_TOOL_SCHEMA))
    return tuple(out)


def custom_tool_names(body: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        t["name"]
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "custom" and isinstance(t.get("name"), str)
    )


def _tool_choice(body: dict[str, Any]) -> tuple[ToolChoice, str | None]:
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        name = choice.get("name")
        if choice.get("type") in ("function", "custom") and isinstance(name, str):
            return "auto", name
        if choice.get("type") == "allowed_tools" and choice.get("mode") == "required":
            return "any", None
        return "auto", None
    return ("none" if choice == "none" else "any" if choice == "required" else "auto"), None


def wants_reasoning(body: dict[str, Any]) -> bool:
    reasoning = body.get("reasoning")
    # effort "none" (gpt-5.1 and later) turns reasoning off: no reasoning item at all.
    return isinstance(reasoning, dict) and reasoning.get("effort") != "none"


def scenario_input(body: dict[str, Any], seed: str) -> ScenarioInput:
    raw = body.get("input")
    items = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    if isinstance(raw, str):
        text = raw
    else:
        users = [i for i in items if _is_message(i) and i.get("role") == "user"]
        text = _text(users[-1].get("content")) if users else ""
    last = items[-1] if items else {}
    is_result = last.get("type") in ("function_call_output", "custom_tool_call_output")
    tool_choice, forced = _tool_choice(body)
    limit = body.get("max_output_tokens")
    return ScenarioInput(
        text=text,
        seed=seed,
        tools=_tools(body),
        tool_choice=tool_choice,
        forced_tool=forced,
        parallel_tool_calls=body.get("parallel_tool_calls", True) is not False,
        tool_result=_text(last.get("output")) if is_result else None,
        thinking=wants_reasoning(body),
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
        input_tokens=estimate_tokens(
            dumps_compact([body.get("instructions"), raw, body.get("tools")])
        ),
        tool_id_prefix="call_",
    )


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


# Responses makes function tools strict unless the request says otherwise.
_FUNCTION_DEFAULTS = {"description": None, "parameters": None, "strict": True}
_CUSTOM_DEFAULTS = {"description": None, "format": {"type": "text"}}


def _tool_echo(tool: Any) -> Any:
    """A request tool as the response lists it: the real API fills in its defaults."""
    if not isinstance(tool, dict):
        return tool
    if tool.get("type") == "function":
        return {**tool, **{k: v for k, v in _FUNCTION_DEFAULTS.items() if k not in tool}}
    if tool.get("type") == "custom":
        return {**tool, **{k: v for k, v in _CUSTOM_DEFAULTS.items() if k not in tool}}
    return tool


@dataclass(frozen=True)
class Rendering:
    """Everything about one request that shapes its response, besides the plan."""

    resp_id: str
    seed: str
    model: str
    created: int
    body: dict[str, Any]

    @classmethod
    def make(cls, body: dict[str, Any], seed: str, created: int, resp_id: str = "") -> Rendering:
        model = body.get("model")
        return cls(
            resp_id=resp_id or "resp_" + seed[:48],
            seed=seed,
            model=model if isinstance(model, str) else "gpt-4o",
            created=created,
            body=body,
        )

    def item_id(self, prefix: str, *parts: str) -> str:
        return prefix + digest(self.seed, prefix, *parts)[:48]

    @property
    def reasoning(self) -> dict[str, Any] | None:
        value = self.body.get("reasoning")
        return value if isinstance(value, dict) and wants_reasoning(self.body) else None

    @property
    def summary(self) -> bool:
        reasoning = self.reasoning or {}
        return bool(reasoning.get("summary") or reasoning.get("generate_summary"))

    @property
    def encrypted(self) -> bool:
        include = self.body.get("include")
        return isinstance(include, list) and "reasoning.encrypted_content" in include

    @property
    def obfuscate(self) -> bool:
        options = self.body.get("stream_options")
        return not (isinstance(options, dict) and options.get("include_obfuscation") is False)

    @property
    def requested_tier(self) -> str:
        tier = self.body.get("service_tier")
        return tier if isinstance(tier, str) else "auto"

    @property
    def final_tier(self) -> str:
        # A stream starts with the tier asked for and ends with the one that served it.
        return "default" if self.requested_tier == "auto" else self.requested_tier

    def envelope(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        *,
        error: dict[str, Any] | None = None,
        tier: str | None = None,
    ) -> dict[str, Any]:
        """The response object around `output`, every field present as the real API sends."""
        body = self.body
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        text = body.get("text") if isinstance(body.get("text"), dict) else {}
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        effort = "medium" if self.reasoning is not None else None  # the API's default effort
        envelope: dict[str, Any] = {
            "id": self.resp_id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": body.get("background", False),
            "completed_at": self.created + 1 if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "prompt_cache_retention": body.get("prompt_cache_retention"),
            "reasoning": {"effort": effort, "summary": None, **(reasoning or {})},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": tier or self.final_tier,
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {**DEFAULT_TEXT, **(text or {})},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": [_tool_echo(t) for t in body.get("tools") or []],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }
        for extra in ("conversation", "prompt"):  # echoed only when the request used them
            if isinstance(body.get(extra), dict | str):
                value = body[extra]
                envelope[extra] = {"id": value} if isinstance(value, str) else value
        return envelope


def usage(plan: Plan, reasoning_tokens: int) -> dict[str, Any]:
    # `cache_write_tokens` is newer than the 2025 recordings, but the SDK requires it.
    inp, out = plan.usage.input_tokens, plan.usage.output_tokens
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": inp + out,
    }


def encrypted_content(seed: str) -> str:
    """An opaque blob shaped like the real one (a Fernet token, hence `gAAAAA`)."""
    raw = b"".join(bytes.fromhex(digest(seed, "encrypted", str(i))) for i in range(4))
    return "gAAAAA" + base64.urlsafe_b64encode(raw).decode()


def output_items(plan: Plan, ctx: Rendering) -> list[dict[str, Any]]:
    """The finished output items, in output order: reasoning, message, tool calls."""
    items: list[dict[str, Any]] = []
    if ctx.reasoning is not None and plan.thinking is not None:
        summary = [{"type": "summary_text", "text": plan.thinking}] if ctx.summary else []
        reasoning: dict[str, Any] = {"id": ctx.item_id("rs_"), "type": "reasoning"}
        if ctx.encrypted:
            reasoning["encrypted_content"] = encrypted_content(ctx.seed)
        items.append({**reasoning, "summary": summary})
    if plan.text_chunks or not plan.tool_calls:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": plan.text}
        status = "incomplete" if plan.stop_reason == "max_tokens" else "completed"
        items.append(
            {
                "id": ctx.item_id("msg_"),
                "type": "message",
                "status": status,
                "content": [part],
                "role": "assistant",
            }
        )
    custom = custom_tool_names(ctx.body)
    for i, call in enumerate(plan.tool_calls):
        if call.name in custom:
            raw = call.input.get(CUSTOM_INPUT_KEY)
            items.append(
                {
                    "id": ctx.item_id("ctc_", str(i)),
                    "type": "custom_tool_call",
                    "call_id": call.id,
                    "input": raw if isinstance(raw, str) else dumps_compact(call.input),
                    "name": call.name,
                }
            )
            continue
        items.append(
            {
                "id": ctx.item_id("fc_", str(i)),
                "type": "function_call",
                "status": "completed",
                "arguments": dumps_compact(call.input),
                "call_id": call.id,
                "name": call.name,
            }
        )
    return items


def final_status(plan: Plan) -> str:
    return "incomplete" if plan.stop_reason == "max_tokens" else "completed"


def reasoning_tokens(plan: Plan, ctx: Rendering) -> int:
    return estimate_tokens(plan.thinking or "") if ctx.reasoning is not None else 0


def render_response(plan: Plan, ctx: Rendering) -> dict[str, Any]:
    """The non-streaming response object."""
    items = output_items(plan, ctx)
    return ctx.envelope(final_status(plan), items, usage(plan, reasoning_tokens(plan, ctx)))
