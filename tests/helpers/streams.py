"""Checking what a client received: SSE bytes -> invariant violations and text.

Bytes are framed with the project's own SSE framer (any line ending, any chunking) and
checked by the dialect's own stream validator, the one `validate_streams` runs.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.dialects.anthropic.validator import StreamValidator as AnthropicValidator
from extproc.dialects.base import StreamValidator
from extproc.dialects.openai.validator import StreamValidator as OpenAIValidator
from extproc.dialects.registry import OPENAI_RESPONSES
from extproc.sse import Frame, SSEFramer
from tests.helpers.dialects import api_request
from tests.helpers.responses_mock import stream_problems as responses_stream_problems


def frames(raw: bytes) -> list[Frame]:
    """Every SSE event in `raw` (the last one also without its blank line)."""
    framer = SSEFramer(max_frame_bytes=1 << 30)
    return [*framer.feed(raw), *framer.flush()]


def payloads(raw: bytes) -> list[Any]:
    """The parsed JSON of every event's data that is JSON (`[DONE]` and comments left
    out)."""
    out = []
    for frame in frames(raw):
        if frame.data is not None:
            try:
                out.append(orjson.loads(frame.data))
            except orjson.JSONDecodeError:
                continue
    return out


def validate_stream(path: str, body: dict[str, Any], raw: bytes) -> list[str]:
    """Every invariant of DESIGN.md's stream section, checked on what the client got."""
    validator: StreamValidator
    if path == "/v1/messages":
        validator = AnthropicValidator()
    elif path == OPENAI_RESPONSES.path:
        validator = OPENAI_RESPONSES.validator(api_request(body, OPENAI_RESPONSES))
    else:
        options = body.get("stream_options") or {}
        validator = OpenAIValidator(expect_usage=bool(options.get("include_usage")))
    for frame in frames(raw):
        validator.feed(frame)
    return list(validator.finish())


def anthropic_text(raw: bytes) -> str:
    out = []
    for frame in frames(raw):
        if frame.event == "content_block_delta" and frame.data:
            out.append(orjson.loads(frame.data)["delta"].get("text", ""))
    return "".join(out)


def openai_text(raw: bytes) -> str:
    out = []
    for frame in frames(raw):
        if frame.data and frame.data.startswith("{"):
            for choice in orjson.loads(frame.data).get("choices") or []:
                out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


def anthropic_block_starts(raw: bytes) -> list[dict[str, Any]]:
    """The payloads of every `content_block_start` event, in order."""
    return [
        orjson.loads(frame.data)
        for frame in frames(raw)
        if frame.event == "content_block_start" and frame.data
    ]


def openai_tool_call_deltas(raw: bytes) -> list[dict[str, Any]]:
    """Every entry of every chunk's `delta.tool_calls`, in order (error events and
    `[DONE]` left out)."""
    return [
        call
        for payload in payloads(raw)
        if isinstance(payload, dict)
        for choice in payload.get("choices") or []
        for call in (choice.get("delta") or {}).get("tool_calls") or []
    ]


# -- OpenAI Responses API ------------------------------------------------------------------


def validate_responses_stream(raw: bytes, body: dict[str, Any]) -> list[str]:
    """What breaks the Responses stream contract in what the client got: the dialect's
    own validator (`validate_stream`), and an independent check (event names equal to
    their types, `sequence_number` 0..n-1, `response.created` first, every added item and
    part done, one terminal event, last, whose `output` is the `.done` items)."""
    return [
        *validate_stream("/v1/responses", {**body, "stream": True}, raw),
        *responses_stream_problems(raw),
    ]


def responses_events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON object of every event, in order (frames whose data is not a JSON object
    left out)."""
    return [p for p in payloads(raw) if isinstance(p, dict)]


def responses_text(raw: bytes) -> str:
    """Every `response.output_text.delta`, joined: the text a client shows as it streams."""
    return "".join(
        str(p.get("delta", ""))
        for p in responses_events(raw)
        if p.get("type") == "response.output_text.delta"
    )


def responses_of_type(raw: bytes, kind: str) -> list[dict[str, Any]]:
    """The payloads of every event of type `kind`, in order."""
    return [p for p in responses_events(raw) if p.get("type") == kind]
