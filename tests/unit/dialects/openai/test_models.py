"""The typed OpenAI chat completions models and serializers
(extproc/dialects/openai/models.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.dialects.openai import models as oa
from extproc.dialects.openai.stream_engine import DONE
from extproc.dialects.registry import OPENAI_CHAT
from tests.helpers.dialects import EXTRAS, HEADER, USAGE, add_extras, data_of, openai_chunks


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
    # The terminator: the data the stream engine recognizes, the event the dialect writes.
    assert DONE == "[DONE]"
    assert OPENAI_CHAT.close_after_error() == b"data: [DONE]\n\n"


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


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        oa.parse_chunk([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a JSON object"):
        oa.parse_completion("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid in-stream error"):
        oa.parse_stream_payload({"error": 42})
    assert isinstance(oa.parse_stream_payload({"error": "just a string"}), oa.StreamError)
    assert oa.is_stream_error({"error": {}}) and not oa.is_stream_error({"error": {}, "object": 1})


# -- property tests ----------------------------------------------------------------------


@st.composite
def openai_payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload = add_extras(draw, draw(st.sampled_from(openai_chunks())), "usage")
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
