"""Realistic requests and responses of each dialect, for the dialect and policy tests.

- Responses: an Anthropic stream (a thinking, a text and a tool_use block) as a list of
  (event type, payload), and OpenAI chunks (parallel tool calls with include_usage).
- Requests: an Anthropic and an OpenAI body with every kind of content (system prompts,
  images, thinking, tool uses and results), and `api_request()` to wrap one.
- Hypothesis strategies for arbitrary JSON and extra fields.
"""

from __future__ import annotations

import copy
import string
from typing import Any

import orjson
from hypothesis import strategies as st

from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC

Event = tuple[str, dict[str, Any]]


def data_of(frame: bytes) -> Any:
    """The parsed JSON of a serialized event's one `data:` line."""
    (line,) = [ln for ln in frame.split(b"\n") if ln.startswith(b"data: ")]
    return orjson.loads(line[len(b"data: ") :])


def splice(items: list[Any], index: int, *new: Any, drop: int = 1) -> list[Any]:
    """`items` with `drop` items at `index` replaced by `new` (in place)."""
    items[index : index + drop] = new
    return items


# -- Anthropic responses -----------------------------------------------------------------

MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
        "service_tier": "standard",
    },
}
BLOCKS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "thinking": (
        {"type": "thinking", "thinking": "", "signature": ""},
        [
            {"type": "thinking_delta", "thinking": "The user wants the weather. "},
            {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
        ],
    ),
    "text": (
        {"type": "text", "text": ""},
        [{"type": "text_delta", "text": "Let me check "}, {"type": "text_delta", "text": "ü 🌍"}],
    ),
    "tool_use": (
        {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2t", "name": "get_weather", "input": {}},
        [
            {"type": "input_json_delta", "partial_json": ""},
            {"type": "input_json_delta", "partial_json": '{"location": "San Fra'},
            {"type": "input_json_delta", "partial_json": 'ncisco, CA", "unit": "celsius"}'},
        ],
    ),
}


def ev(kind: str, **fields: Any) -> Event:
    return kind, {"type": kind, **fields}


def anthropic_stream(
    kinds: tuple[str, ...] = ("thinking", "text", "tool_use"), stop_reason: str = "tool_use"
) -> list[Event]:
    """A fresh copy of a whole stream with blocks of these kinds."""
    events = [ev("message_start", message=MESSAGE), ev("ping")]
    for index, kind in enumerate(kinds):
        block, deltas = BLOCKS[kind]
        events.append(ev("content_block_start", index=index, content_block=block))
        events += [ev("content_block_delta", index=index, delta=d) for d in deltas]
        events.append(ev("content_block_stop", index=index))
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    events.append(ev("message_delta", delta=delta, usage={"output_tokens": 89}))
    return copy.deepcopy([*events, ev("message_stop")])


def anthropic_sse(events: list[Event]) -> bytes:
    """The events as the API writes them on the wire."""
    return b"".join(
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        for kind, payload in events
    )


# -- OpenAI responses --------------------------------------------------------------------

HEADER = {
    "id": "chatcmpl-AzLrEwIrV3GfXlYjOgZ6ZtJqz1Ydq",
    "object": "chat.completion.chunk",
    "created": 1739185812,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_50cad350e4",
}
USAGE = {
    "prompt_tokens": 82,
    "completion_tokens": 51,
    "total_tokens": 133,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
USAGE_CHUNK = HEADER | {"choices": [], "usage": USAGE, "obfuscation": "Q"}


def openai_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return HEADER | {"choices": [choice], "usage": None, "obfuscation": "k3Z"} | extra


def call_delta(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    """A delta with one tool call fragment; with `name`, the call's first fragment."""
    tool_call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        tool_call |= {"id": f"call_{index}", "type": "function"}
        tool_call["function"] = {"name": name, "arguments": arguments}
    return {"tool_calls": [tool_call]}


def openai_chunks(tool_index: int = 1, args: str = '{"location": "Paris"}') -> list[Any]:
    """Two parallel tool calls, a finish and a usage chunk (no [DONE])."""
    first = {"role": "assistant", "content": None, "refusal": None} | call_delta(
        0, "", "get_weather"
    )
    return [
        openai_chunk(first),
        openai_chunk(call_delta(0, args[:5])),
        openai_chunk(call_delta(0, args[5:])),
        openai_chunk(call_delta(tool_index, "", "get_time")),
        openai_chunk(call_delta(tool_index, '{"tz": "CET"}')),
        openai_chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]


def openai_sse(items: list[Any]) -> bytes:
    """Chunks (dicts) and raw data strings (`[DONE]`) as data lines."""
    return b"".join(
        b"data: " + (item.encode() if isinstance(item, str) else orjson.dumps(item)) + b"\n\n"
        for item in items
    )


# -- arbitrary JSON ----------------------------------------------------------------------

KEY = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3),
    max_leaves=8,
)
EXTRAS = st.dictionaries(KEY.map("x_".__add__), JSON, max_size=3)


def add_extras(draw: st.DrawFn, payload: dict[str, Any], *paths: str) -> dict[str, Any]:
    """A copy of `payload` with extra fields at the top and in the objects at `paths`."""
    payload = copy.deepcopy(payload)
    payload |= draw(EXTRAS)
    for path in paths:
        node: Any = payload
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node |= draw(EXTRAS)
    return payload


# -- requests ----------------------------------------------------------------------------

IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "abc"}}
THINKING = {"type": "thinking", "thinking": "secret plan", "signature": "sig=="}
REDACTED = {"type": "redacted_thinking", "data": "opaque"}
OPENAI_CALL = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
TOOL_USE = {"type": "tool_use", "id": "tu_1", "name": "bash", "input": {"command": "ls"}}


def anthropic_body() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "sys one", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [THINKING, REDACTED, {"type": "text", "text": "ok"}]},
            {"role": "assistant", "content": [TOOL_USE]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "out one"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_2",
                        "content": [{"type": "text", "text": "out two"}, IMAGE],
                    },
                    IMAGE,
                    {"type": "text", "text": "look"},
                ],
            },
        ],
    }


def openai_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,abc"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "files"},
        ],
    }


def api_request(body: dict[str, Any], dialect: Dialect = ANTHROPIC) -> ApiRequest:
    """A non-streaming request of the dialect's policy path with this body."""
    return ApiRequest(
        dialect=dialect, path=dialect.path, model=body.get("model", ""), stream=False, body=body
    )


def strip_texts(value: Any) -> Any:
    """`value` with every string `text` or `content` replaced by a placeholder: two bodies
    that differ only in their texts strip to the same value."""
    if isinstance(value, dict):
        return {
            k: "<t>" if k in ("text", "content") and isinstance(v, str) else strip_texts(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [strip_texts(v) for v in value]
    return value
