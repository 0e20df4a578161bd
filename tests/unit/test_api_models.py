"""Tests for the typed API models, serializers and stream validators (extproc/apis)."""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.apis import anthropic as an
from extproc.apis import openai as oa

Event = tuple[str, dict[str, Any]]


def data_of(frame: bytes) -> Any:
    (line,) = [ln for ln in frame.split(b"\n") if ln.startswith(b"data: ")]
    return orjson.loads(line[len(b"data: ") :])


# --- Anthropic fixtures: a thinking block, a text block and a tool_use block -----------

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
    events = [ev("message_start", message=MESSAGE), ev("ping")]
    for index, kind in enumerate(kinds):
        block, deltas = BLOCKS[kind]
        events.append(ev("content_block_start", index=index, content_block=block))
        events += [ev("content_block_delta", index=index, delta=d) for d in deltas]
        events.append(ev("content_block_stop", index=index))
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    events.append(ev("message_delta", delta=delta, usage={"output_tokens": 89}))
    return copy.deepcopy([*events, ev("message_stop")])


def anthropic_violations(events: list[Event]) -> list[str]:
    validator = an.StreamValidator()
    for kind, payload in events:
        validator.feed(kind, payload)
    return validator.finish()


def test_anthropic_stream_parses_into_typed_models() -> None:
    parsed = [an.parse_event(p) for _, p in anthropic_stream()]
    kinds = [type(e).__name__ for e in parsed]
    assert kinds[:3] == ["MessageStart", "Ping", "ContentBlockStart"]
    assert isinstance(parsed[2], an.ContentBlockStart)
    assert isinstance(parsed[2].content_block, an.ThinkingBlock)
    tool = next(e for e in parsed if isinstance(e, an.ContentBlockStart) and e.index == 2)
    assert isinstance(tool.content_block, an.ToolUseBlock)
    assert tool.content_block.name == "get_weather"
    deltas = [e.delta for e in parsed if isinstance(e, an.ContentBlockDelta)]
    assert [type(d) for d in deltas[:3]] == [an.ThinkingDelta, an.SignatureDelta, an.TextDelta]
    assert isinstance(deltas[-1], an.InputJsonDelta)
    assert isinstance(parsed[-2], an.MessageDelta) and parsed[-2].delta.stop_reason == "tool_use"
    assert isinstance(parsed[0], an.MessageStart)
    assert parsed[0].message.usage.model_extra == {"service_tier": "standard"}


def test_anthropic_serialize_is_wire_format() -> None:
    for kind, payload in anthropic_stream():
        frame = an.serialize_event(an.parse_event(payload))
        assert frame == b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def test_anthropic_generic_blocks_deltas_and_errors() -> None:
    server = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    start = an.parse_event({"type": "content_block_start", "index": 0, "content_block": server})
    assert isinstance(start, an.ContentBlockStart)
    assert isinstance(start.content_block, an.GenericBlock)
    cite = {"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "x"}}
    delta = an.parse_event({"type": "content_block_delta", "index": 0, "delta": cite})
    assert isinstance(delta, an.ContentBlockDelta) and isinstance(delta.delta, an.GenericDelta)
    err = an.parse_event({"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    assert isinstance(err, an.ErrorEvent) and err.error.type == "overloaded_error"
    bad = {"type": "content_block_delta", "index": "0", "delta": {"type": "text_delta"}}
    unknown = an.parse_event(bad)
    assert isinstance(unknown, an.UnknownEvent) and unknown.parse_error
    assert data_of(an.serialize_event(unknown)) == bad  # no coercion of "0" to 0
    with pytest.raises(ValueError, match="JSON object"):
        an.parse_event([1, 2])  # type: ignore[arg-type]


def test_anthropic_constructed_events_and_message() -> None:
    event = an.ContentBlockDelta(index=3, delta=an.TextDelta(text="[redacted]"))
    assert an.serialize_event(event) == (
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"[redacted]"}}'
        b"\n\n"
    )
    body = MESSAGE | {"content": [BLOCKS["text"][0] | {"text": "Hi"}, BLOCKS["tool_use"][0]]}
    body |= {"stop_reason": "tool_use"}
    message = an.parse_message(body)
    assert isinstance(message.content[1], an.ToolUseBlock)
    message.content[0].text = "Bye"  # type: ignore[union-attr]
    assert orjson.loads(an.serialize_message(message))["content"][0]["text"] == "Bye"
    assert orjson.loads(an.serialize_message(an.parse_message(body))) == body


# --- Anthropic validator ----------------------------------------------------------------


def _shift_blocks_from(events: list[Event], first: int) -> list[Event]:
    for _, payload in events:
        if payload.get("index", -1) >= first:
            payload["index"] += 1
    return events


def _splice(items: list[Any], index: int, *new: Any, drop: int = 1) -> list[Any]:
    items[index : index + drop] = new
    return items


THINK = {"type": "thinking_delta", "thinking": "x"}
ANTHROPIC_BROKEN: dict[str, tuple[Callable[[], list[Event]], str]] = {
    "duplicate message_start": (
        lambda: _splice(anthropic_stream(), 2, ev("message_start", message=MESSAGE), drop=0),
        "duplicate message_start",
    ),
    "skipped index": (
        lambda: _shift_blocks_from(anthropic_stream(), 1),
        "content_block_start index 2, expected 1",
    ),
    "missing stop": (
        lambda: _splice(anthropic_stream(), 5),
        "content_block_start 1 while block 0 is still open",
    ),
    "text after tool_use": (
        lambda: anthropic_stream(("thinking", "tool_use", "text")),
        "text block 2 after a tool_use block",
    ),
    "stop_reason tool_use without tool_use": (
        lambda: anthropic_stream(("text",)),
        "stop_reason is tool_use but no tool_use block was sent",
    ),
    "missing message_stop": (lambda: anthropic_stream()[:-1], "without message_stop"),
    "delta of the wrong kind": (
        lambda: _splice(anthropic_stream(), 7, ev("content_block_delta", index=1, delta=THINK)),
        "thinking_delta for text block 1",
    ),
    "tool input not JSON": (
        lambda: _splice(anthropic_stream(), 12),
        "tool_use block 2 input is not valid JSON",
    ),
    "duplicate message_delta": (
        lambda: [*anthropic_stream()[:-1], *anthropic_stream()[-2:]],
        "duplicate message_delta",
    ),
    "event after message_stop": (lambda: [*anthropic_stream(), ev("ping")], "after message_stop"),
    "event before message_start": (
        lambda: [ev("ping"), *anthropic_stream()],
        "ping before message_start",
    ),
}


def test_anthropic_valid_stream_has_no_violations() -> None:
    assert anthropic_violations(anthropic_stream()) == []
    assert anthropic_violations(anthropic_stream(("text",), "end_turn")) == []
    with_unknown = [*anthropic_stream()[:3], ev("future_event", x=1), *anthropic_stream()[3:]]
    assert anthropic_violations(with_unknown) == []
    error = ev("error", error={"type": "overloaded_error", "message": "Overloaded"})
    assert anthropic_violations([*anthropic_stream()[:5], error]) == []
    assert anthropic_violations(anthropic_stream()[:5]) == ["stream ended without message_stop"]


@pytest.mark.parametrize("case", sorted(ANTHROPIC_BROKEN))
def test_anthropic_validator_reports_exactly_the_broken_invariant(case: str) -> None:
    build, expected = ANTHROPIC_BROKEN[case]
    violations = anthropic_violations(build())
    assert len(violations) == 1, violations
    assert expected in violations[0]


# --- OpenAI fixtures: parallel tool calls with include_usage -----------------------------

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


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return HEADER | {"choices": [choice], "usage": None, "obfuscation": "k3Z"} | extra


def call(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    tool_call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        tool_call |= {"id": f"call_{index}", "type": "function"}
        tool_call["function"] = {"name": name, "arguments": arguments}
    return {"tool_calls": [tool_call]}


def openai_chunks(tool_index: int = 1, args: str = '{"location": "Paris"}') -> list[Any]:
    first = {"role": "assistant", "content": None, "refusal": None} | call(0, "", "get_weather")
    return [
        chunk(first),
        chunk(call(0, args[:5])),
        chunk(call(0, args[5:])),
        chunk(call(tool_index, "", "get_time")),
        chunk(call(tool_index, '{"tz": "CET"}')),
        chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]


def openai_violations(chunks: list[Any], expect_usage: bool = True) -> list[str]:
    validator = oa.StreamValidator(expect_usage=expect_usage)
    for item in chunks:
        validator.feed(item if isinstance(item, str) else orjson.dumps(item).decode())
    return validator.finish()


def test_openai_stream_parses_and_round_trips() -> None:
    for payload in openai_chunks():
        parsed = oa.parse_stream_payload(payload)
        assert isinstance(parsed, oa.ChatCompletionChunk)
        assert data_of(oa.serialize_chunk(parsed)) == payload
    first = oa.parse_chunk(openai_chunks()[0])
    assert first.choices[0].delta.tool_calls is not None
    function = first.choices[0].delta.tool_calls[0].function
    assert function is not None and function.name == "get_weather"
    assert "content" in first.choices[0].delta.model_fields_set  # explicit null kept
    last = oa.parse_chunk(openai_chunks()[-1])
    assert last.usage is not None and last.usage.total_tokens == 133
    assert oa.DONE == b"data: [DONE]\n\n"


def test_openai_errors_and_completion() -> None:
    error = {
        "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    }
    parsed = oa.parse_stream_payload(error)
    assert isinstance(parsed, oa.StreamError) and data_of(oa.serialize_chunk(parsed)) == error
    with pytest.raises(ValueError, match="invalid chat"):
        oa.parse_stream_payload({"object": "chat.completion.chunk", "choices": "x"})
    function = {"name": "get_weather", "arguments": '{"location":"Paris"}'}
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    message["tool_calls"] = [{"id": "call_0", "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
    body = HEADER | {"object": "chat.completion", "choices": [choice], "usage": USAGE}
    completion = oa.parse_completion(body)
    assert completion.choices[0].message.tool_calls is not None
    assert orjson.loads(oa.serialize_completion(completion)) == body


OPENAI_BROKEN: dict[str, tuple[Callable[[], list[Any]], str]] = {
    "missing [DONE]": (openai_chunks, "stream ended without [DONE]"),
    "two finish_reasons": (
        lambda: [*openai_chunks()[:-1], chunk({}, "stop"), openai_chunks()[-1], "[DONE]"],
        "choice 0: second finish_reason",
    ),
    "tool call index gap": (
        lambda: [*openai_chunks(tool_index=2), "[DONE]"],
        "tool call index 2, expected 1",
    ),
    "bad JSON arguments": (
        lambda: [*openai_chunks(args='{"location": "Par'), "[DONE]"],
        "tool call 0 arguments are not valid JSON",
    ),
    "missing role": (
        lambda: [*_splice(openai_chunks(), 0, chunk(call(0, "", "x"))), "[DONE]"],
        "first delta has role None",
    ),
    "tool_calls finish without tool calls": (
        lambda: [chunk({"role": "assistant"}), chunk({}, "tool_calls"), USAGE_CHUNK, "[DONE]"],
        "finish_reason tool_calls without tool calls",
    ),
    "missing usage chunk": (lambda: [*openai_chunks()[:-1], "[DONE]"], "no usage chunk"),
    "content after finish_reason": (
        lambda: [*openai_chunks()[:-1], chunk({"content": "x"}), openai_chunks()[-1], "[DONE]"],
        "delta after finish_reason",
    ),
    "data after [DONE]": (lambda: [*openai_chunks(), "[DONE]", "[DONE]"], "duplicate [DONE]"),
    "later delta repeats id": (
        lambda: [*_splice(openai_chunks(), 2, chunk(call(0, 'ation": "Paris"}', "y"))), "[DONE]"],
        "later delta repeats id",
    ),
}


def test_openai_valid_streams_have_no_violations() -> None:
    assert openai_violations([*openai_chunks(), "[DONE]"]) == []
    text = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"})]
    assert openai_violations([*text, chunk({}, "stop"), "[DONE]"], expect_usage=False) == []
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    assert openai_violations([*openai_chunks()[:3], error, "[DONE]"]) == []


@pytest.mark.parametrize("case", sorted(OPENAI_BROKEN))
def test_openai_validator_reports_exactly_the_broken_invariant(case: str) -> None:
    build, expected = OPENAI_BROKEN[case]
    violations = openai_violations(build())
    assert len(violations) == 1, violations
    assert expected in violations[0]


# --- property tests ----------------------------------------------------------------------

_KEY = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=3),
    max_leaves=8,
)
EXTRAS = st.dictionaries(_KEY.map("x_".__add__), JSON, max_size=3)


def _add_extras(draw: st.DrawFn, payload: dict[str, Any], *paths: str) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    payload |= draw(EXTRAS)
    for path in paths:
        node: Any = payload
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node |= draw(EXTRAS)
    return payload


GENERIC = [
    ev("content_block_start", index=0, content_block={"type": "server_tool_use", "id": "s"}),
    ev("content_block_delta", index=0, delta={"type": "citations_delta", "citation": {}}),
    ev("error", error={"type": "overloaded_error", "message": "Overloaded"}),
]


@st.composite
def anthropic_payloads(draw: st.DrawFn) -> dict[str, Any]:
    _, payload = draw(st.sampled_from(anthropic_stream() + GENERIC))
    nested = ("content_block", "delta", "message", "message.usage", "usage", "error")
    return _add_extras(draw, payload, *nested)


@settings(max_examples=50, deadline=None)
@given(anthropic_payloads())
def test_anthropic_round_trip_keeps_extra_fields(payload: dict[str, Any]) -> None:
    event = an.parse_event(payload)
    assert not isinstance(event, an.UnknownEvent), event.parse_error
    assert data_of(an.serialize_event(event)) == payload


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(an.EVENT_TYPES)) | _KEY, st.dictionaries(_KEY, JSON))
def test_any_dict_with_a_type_round_trips(kind: str, fields: dict[str, Any]) -> None:
    payload = fields | {"type": kind}
    frame = an.serialize_event(an.parse_event(payload))
    assert frame.startswith(b"event: " + kind.encode() + b"\n")
    assert data_of(frame) == payload


@st.composite
def openai_payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload = _add_extras(draw, draw(st.sampled_from(openai_chunks())), "usage")
    for choice in payload["choices"]:
        choice |= draw(EXTRAS)
        choice["delta"] |= draw(EXTRAS)
        for tool_call in choice["delta"].get("tool_calls", []):
            tool_call |= draw(EXTRAS)
            tool_call["function"] |= draw(EXTRAS)
    return payload


@settings(max_examples=50, deadline=None)
@given(openai_payloads())
def test_openai_round_trip_keeps_extra_fields(payload: dict[str, Any]) -> None:
    assert data_of(oa.serialize_chunk(oa.parse_chunk(payload))) == payload
