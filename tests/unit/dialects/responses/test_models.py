"""The typed Responses API models and serializers (extproc/dialects/responses/models*.py)."""

from __future__ import annotations

import copy
from typing import Any, get_args

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from openai.types.responses.tool import Tool as SdkTool
from pydantic import TypeAdapter

from extproc.dialects.responses import models as rm
from extproc.dialects.responses import models_events as re_
from extproc.dialects.responses import models_request as rq
from tests.helpers.dialects import EXTRAS, JSON, KEY, add_extras, data_of
from tests.helpers.responses_streams import (
    SHAPES,
    Call,
    Item,
    Text,
    render_stream,
    response_object,
    responses_events,
    shape_events,
)


def _sdk_literals(union: Any) -> set[str]:
    """The `type` literals of every class of one of the SDK's discriminated unions."""
    return {
        kind
        for cls in get_args(get_args(union)[0])
        for kind in get_args(cls.model_fields["type"].annotation)
    }


# -- coverage against the installed SDK -----------------------------------------------------


def test_event_types_are_the_sdks() -> None:
    assert set(re_.EVENT_TYPES) == _sdk_literals(ResponseStreamEvent)
    assert len(re_.EVENT_TYPES) == 59


def test_builtin_tool_types_are_the_sdks() -> None:
    assert rm.BUILTIN_TOOL_TYPES | {"function", "custom"} == _sdk_literals(SdkTool)
    assert "mcp" in rm.BUILTIN_TOOL_TYPES


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_helper_streams_satisfy_the_sdks_own_types(shape: str) -> None:
    """The test streams are what the SDK's strict validation accepts, except the one
    field real streams lack and the SDK requires (usage.input_tokens_details
    .cache_write_tokens), added here."""
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for _, payload in shape_events(shape):
        usage = payload.get("response", {}).get("usage")
        if usage:
            usage["input_tokens_details"]["cache_write_tokens"] = 0
        adapter.validate_python(payload)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_recorded_shapes_parse_and_serialize_byte_for_byte(shape: str) -> None:
    items, end = SHAPES[shape]
    out = b""
    for kind, payload in responses_events(items, end):
        event = re_.parse_event(payload)
        assert not isinstance(event, re_.UnknownEvent), event.parse_error
        assert type(event) is re_.EVENT_TYPES[kind]
        frame = re_.serialize_event(event)
        assert frame == b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        out += frame
    assert out == render_stream(items, end)
    body = response_object(items, end)
    assert re_.serialize_response(re_.parse_response(body)) == orjson.dumps(body)


def test_events_parse_into_typed_models() -> None:
    events = [re_.parse_event(p) for _, p in shape_events("reasoning then text")]
    created = events[0]
    assert isinstance(created, re_.ResponseEvent) and created.response.output == []
    added = events[2]
    assert isinstance(added, re_.OutputItemEvent) and isinstance(added.item, rm.ReasoningItem)
    summary = events[3]
    assert isinstance(summary, re_.SummaryPartEvent)
    assert isinstance(summary.part, rm.SummaryText)
    delta = next(e for e in events if e.type == "response.output_text.delta")
    assert isinstance(delta, re_.ContentDeltaEvent) and delta.model_extra == {
        "obfuscation": delta.model_extra["obfuscation"]  # type: ignore[index]
    }
    done = events[-1]
    assert isinstance(done, re_.ResponseEvent) and done.response.usage is not None
    assert done.response.usage.input_tokens_details is not None
    assert done.response.usage.input_tokens_details.cached_tokens == 0
    message = done.response.output[1]
    assert isinstance(message, rm.OutputMessage) and isinstance(message.content[0], rm.OutputText)
    assert rm.part_text(message.content[0]) == "Paris is the capital."
    call = re_.parse_event(shape_events("function call")[-2][1])
    assert isinstance(call, re_.OutputItemEvent) and isinstance(call.item, rm.FunctionCall)
    assert rm.item_identity(call.item) == ("function_call", "fc_68d93000", "call_Qx00hT9vK3mW")


def test_an_edited_event_keeps_the_providers_key_order() -> None:
    """A policy's rewrite changes the value in place: the rest stays byte-identical."""
    _, payload = shape_events("text")[-1]
    event = re_.parse_event(payload)
    assert isinstance(event, re_.ResponseEvent)
    message = event.response.output[0]
    assert isinstance(message, rm.OutputMessage) and isinstance(message.content[0], rm.OutputText)
    message.content[0].text = "[redacted]"
    expected = copy.deepcopy(payload)
    expected["response"]["output"][0]["content"][0]["text"] = "[redacted]"
    assert re_.serialize_event(event).split(b"data: ")[1] == orjson.dumps(expected) + b"\n\n"


def test_constructed_events_serialize_in_declaration_order() -> None:
    event = re_.ContentDeltaEvent(
        type="response.output_text.delta",
        sequence_number=4,
        item_id="msg_1",
        output_index=0,
        content_index=0,
        delta="Hi",
    )
    assert re_.serialize_event(event) == (
        b"event: response.output_text.delta\ndata: "
        b'{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1",'
        b'"output_index":0,"content_index":0,"delta":"Hi"}\n\n'
    )
    part = rm.OutputText(text="x")
    assert rm.dump(part) == b'{"type":"output_text","text":"x"}'


# -- lenient about unknown, strict about known -------------------------------------------


def test_unknown_types_parse_into_generic_models() -> None:
    item = {"id": "sh_1", "type": "shell_call", "call_id": "c", "action": {"commands": ["ls"]}}
    event = re_.parse_event(
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": item,
        }
    )
    assert isinstance(event, re_.OutputItemEvent) and isinstance(event.item, rm.GenericItem)
    audio = {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
    part_event = {
        "type": "response.content_part.added",
        "sequence_number": 3,
        "item_id": "m",
        "output_index": 0,
        "content_index": 0,
        "part": audio,
    }
    parsed = re_.parse_event(part_event)
    assert isinstance(parsed, re_.ContentPartEvent) and isinstance(parsed.part, rm.GenericPart)
    future = {"type": "response.future_thing.delta", "sequence_number": 1, "x": [1]}
    unknown = re_.parse_event(future)
    assert isinstance(unknown, re_.UnknownEvent) and unknown.parse_error is None
    assert data_of(re_.serialize_event(unknown)) == future


@pytest.mark.parametrize(
    "payload",
    [
        # a string where an int belongs is not coerced
        {
            "type": "response.output_text.delta",
            "sequence_number": "4",
            "item_id": "m",
            "output_index": 0,
            "content_index": 0,
            "delta": "x",
        },
        # a known part type missing its text
        {
            "type": "response.content_part.added",
            "sequence_number": 3,
            "item_id": "m",
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text"},
        },
        # a function call without call_id
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": {"type": "function_call", "name": "f", "arguments": ""},
        },
        # no sequence_number
        {"type": "response.web_search_call.searching", "item_id": "ws", "output_index": 0},
        # neither error shape
        {"type": "error", "sequence_number": 2},
    ],
)
def test_known_types_are_strict(payload: dict[str, Any]) -> None:
    event = re_.parse_event(payload)
    assert isinstance(event, re_.UnknownEvent) and event.parse_error
    assert data_of(re_.serialize_event(event)) == payload  # kept unchanged


def test_error_event_in_both_shapes() -> None:
    flat = {
        "type": "error",
        "sequence_number": 2,
        "code": "server_error",
        "message": "boom",
        "param": None,
    }
    nested = {
        "type": "error",
        "sequence_number": 2,
        "error": {"type": "server_error", "code": "server_error", "message": "boom", "param": None},
    }
    both = flat | {"error": nested["error"]}
    for payload in (flat, nested, both):
        event = re_.parse_event(payload)
        assert isinstance(event, re_.ErrorEvent), payload
        assert event.error_message == "boom"
        assert data_of(re_.serialize_event(event)) == payload


def test_parse_functions_refuse_non_objects() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        re_.parse_event([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid response object"):
        re_.parse_response({"id": "resp_1"})
    with pytest.raises(ValueError, match="invalid Responses request"):
        rq.parse_request({"input": 3})


# -- requests -------------------------------------------------------------------------------

CODEX_REQUEST: dict[str, Any] = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, based on GPT-5.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions>"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "list files"}],
        },
        {"type": "reasoning", "summary": [], "content": None, "encrypted_content": "gAAAA=="},
        {
            "type": "function_call",
            "name": "shell",
            "arguments": '{"command":["ls"]}',
            "call_id": "call_1",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "README.md"},
        {
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_2",
            "name": "apply_patch",
            "input": "*** Begin Patch",
        },
        # Codex replays hosted calls without their id: generic items, not refused.
        {"type": "web_search_call", "action": {"type": "search", "query": "weather"}},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Here they are."}],
        },
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a command",
            "strict": False,
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Edit files",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
        },
        {"type": "local_shell"},
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a2b4-session",
    "text": {"verbosity": "low"},
}
SDK_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "input": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "detail": "auto", "image_url": "data:image/png;base64,AAA"},
            ],
        },
        {"id": "msg_prev"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    ],
    "tools": [
        {
            "type": "mcp",
            "server_label": "deepwiki",
            "server_url": "https://mcp.deepwiki.com/mcp",
            "require_approval": "never",
            "allowed_tools": ["ask_question"],
        },
        {
            "type": "namespace",
            "name": "crm",
            "description": "CRM",
            "tools": [{"type": "function", "name": "lookup", "parameters": None, "strict": None}],
        },
    ],
    "tool_choice": {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "mcp", "server_label": "deepwiki"}],
    },
    "previous_response_id": "resp_prev",
    "max_output_tokens": 512,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_obfuscation": False},
    "text": {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "strict": True,
            "schema": {"type": "object"},
        }
    },
    "metadata": {"team": "a"},
}


@pytest.mark.parametrize("body", [CODEX_REQUEST, SDK_REQUEST, {"model": "gpt-5", "input": "Hi"}])
def test_requests_round_trip_byte_for_byte(body: dict[str, Any]) -> None:
    assert rq.serialize_request(rq.parse_request(body)) == orjson.dumps(body)


def test_request_items_and_tools_are_typed() -> None:
    codex = rq.parse_request(CODEX_REQUEST)
    assert isinstance(codex.input, list)
    assert [type(i).__name__ for i in codex.input] == [
        "InputMessage",
        "InputMessage",
        "ReasoningItem",
        "FunctionCall",
        "FunctionCallOutput",
        "CustomToolCall",
        "GenericInputItem",
        "CustomToolCallOutput",
        "InputMessage",
    ]
    assert [type(t) for t in codex.tools or []] == [
        rq.FunctionTool,
        rq.CustomTool,
        rq.BuiltinTool,
        rq.BuiltinTool,
    ]
    sdk = rq.parse_request(SDK_REQUEST)
    assert isinstance(sdk.input, list)
    assert [type(i) for i in sdk.input] == [
        rq.InputMessage,
        rq.InputMessage,
        rq.ItemReference,
        rq.GenericInputItem,
    ]
    assert isinstance(sdk.input[1].content, list)  # type: ignore[union-attr]
    assert isinstance(sdk.input[1].content[1], rm.InputImage)  # type: ignore[union-attr]
    namespace = (sdk.tools or [])[1]
    assert isinstance(namespace, rq.NamespaceTool) and isinstance(
        namespace.tools[0], rq.FunctionTool
    )
    assert isinstance(sdk.tool_choice, rq.ToolChoice) and sdk.tool_choice.mode == "auto"
    assert sdk.stream_options is not None and sdk.stream_options.include_obfuscation is False
    assert sdk.text is not None and sdk.text.format is not None
    assert sdk.text.format.model_extra == {"schema": {"type": "object"}}
    unknown_tool = rq.parse_request({"tools": [{"type": "quantum_search", "depth": 3}]})
    assert isinstance((unknown_tool.tools or [])[0], rq.GenericTool)


def test_request_known_fields_are_strict() -> None:
    for body in (
        {"store": "false"},
        {"max_output_tokens": "512"},
        {"tools": [{"type": "function"}]},  # no name
        {"input": [{"type": "function_call_output", "output": "x"}]},  # no call_id
        {"metadata": {"n": 1}},
    ):
        with pytest.raises(ValueError, match="invalid Responses request"):
            rq.parse_request(body)


def test_response_object_matches_the_stream() -> None:
    items: list[Item] = [Text(["a", "b"]), Call("f", ['{"x"', ":1}"])]
    body = response_object(items)
    response = re_.parse_response(body)
    assert [rm.item_identity(i)[0] for i in response.output] == ["message", "function_call"]
    # The SDK's own model reads the same text (given the usage field it requires and
    # real responses lack).
    body["usage"]["input_tokens_details"]["cache_write_tokens"] = 0
    assert SdkResponse.model_validate(body).output_text == "ab"


# -- property tests ---------------------------------------------------------------------------

ALL_EVENTS = [e for shape in SHAPES for e in shape_events(shape)]


@st.composite
def responses_payloads(draw: st.DrawFn) -> dict[str, Any]:
    _, payload = draw(st.sampled_from(ALL_EVENTS))
    nested = ("item", "part", "response", "response.usage", "response.text", "error")
    return add_extras(draw, payload, *nested)


@settings(max_examples=60, deadline=None)
@given(responses_payloads())
def test_round_trip_keeps_extra_fields(payload: dict[str, Any]) -> None:
    event = re_.parse_event(payload)
    assert not isinstance(event, re_.UnknownEvent), event.parse_error
    assert re_.serialize_event(event).split(b"data: ", 1)[1] == orjson.dumps(payload) + b"\n\n"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(re_.EVENT_TYPES)) | KEY, st.dictionaries(KEY, JSON))
def test_any_dict_with_a_type_round_trips(kind: str, fields: dict[str, Any]) -> None:
    payload = fields | {"type": kind}
    frame = re_.serialize_event(re_.parse_event(payload))
    assert frame.startswith(b"event: " + kind.encode() + b"\n")
    assert data_of(frame) == payload


@st.composite
def requests_with_extras(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(st.sampled_from([CODEX_REQUEST, SDK_REQUEST]))
    extended = add_extras(draw, body, "reasoning", "text", "text.format", "stream_options")
    for entry in [*extended.get("tools", []), *extended["input"]]:
        entry |= draw(EXTRAS)
    return extended


@settings(max_examples=40, deadline=None)
@given(requests_with_extras())
def test_requests_keep_extra_fields(body: dict[str, Any]) -> None:
    assert rq.serialize_request(rq.parse_request(body)) == orjson.dumps(body)
