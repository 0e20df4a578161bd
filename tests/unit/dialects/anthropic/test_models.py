"""The typed Anthropic models and serializers (extproc/dialects/anthropic/models.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.dialects.anthropic import models as an
from tests.helpers.dialects import (
    BLOCKS,
    JSON,
    KEY,
    MESSAGE,
    add_extras,
    anthropic_stream,
    data_of,
    ev,
)


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


# -- property tests ----------------------------------------------------------------------

GENERIC = [
    ev("content_block_start", index=0, content_block={"type": "server_tool_use", "id": "s"}),
    ev("content_block_delta", index=0, delta={"type": "citations_delta", "citation": {}}),
    ev("error", error={"type": "overloaded_error", "message": "Overloaded"}),
]


@st.composite
def anthropic_payloads(draw: st.DrawFn) -> dict[str, Any]:
    _, payload = draw(st.sampled_from(anthropic_stream() + GENERIC))
    nested = ("content_block", "delta", "message", "message.usage", "usage", "error")
    return add_extras(draw, payload, *nested)


@settings(max_examples=50, deadline=None)
@given(anthropic_payloads())
def test_anthropic_round_trip_keeps_extra_fields(payload: dict[str, Any]) -> None:
    event = an.parse_event(payload)
    assert not isinstance(event, an.UnknownEvent), event.parse_error
    assert data_of(an.serialize_event(event)) == payload


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(an.EVENT_TYPES)) | KEY, st.dictionaries(KEY, JSON))
def test_any_dict_with_a_type_round_trips(kind: str, fields: dict[str, Any]) -> None:
    payload = fields | {"type": kind}
    frame = an.serialize_event(an.parse_event(payload))
    assert frame.startswith(b"event: " + kind.encode() + b"\n")
    assert data_of(frame) == payload
