"""Asking a chat stream for the usage report the client did not ask for (to count a
caller's tokens), and giving the stream back as the client would have had it without
the ask: the report dropped, the `"usage":null` of every other chunk removed byte-exactly."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import orjson
import pytest

from extproc.dialects.openai.usage import ask_for_usage, without_usage
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.sse import Frame
from tests.helpers.dialects import USAGE, USAGE_CHUNK, openai_body, openai_chunk, openai_sse
from tests.helpers.streams import frames


def frame_of(item: Any) -> Frame:
    (frame,) = frames(openai_sse([item]))
    return frame


def streaming(**fields: Any) -> dict[str, Any]:
    return {**openai_body(), "stream": True, **fields}


# -- asking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        openai_body(),
        {**openai_body(), "stream": False},
        {**openai_body(), "stream": "true"},  # only a real true streams
        {**openai_body(), "stream_options": {"include_usage": False}},
    ],
    ids=["no-stream", "stream-false", "stream-string", "options-without-stream"],
)
def test_only_streaming_requests_are_changed(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    assert ask_for_usage(body) is False
    assert body == before


def test_a_stream_without_options_is_given_them() -> None:
    body = streaming()
    assert ask_for_usage(body) is True
    assert body["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in body.items() if k != "stream_options"} == streaming()


def test_existing_stream_options_are_kept_and_include_usage_added() -> None:
    options = {"include_obfuscation": False}
    body = streaming(stream_options=options)
    assert ask_for_usage(body) is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert options == {"include_obfuscation": False}  # the client's own object untouched


@pytest.mark.parametrize("options", [{"include_usage": False}, None, "yes", []])
def test_options_that_do_not_ask_are_made_to(options: Any) -> None:
    body = streaming(stream_options=options)
    assert ask_for_usage(body) is True
    assert body["stream_options"]["include_usage"] is True


def test_a_client_that_asked_already_is_left_alone() -> None:
    body = streaming(stream_options={"include_usage": True, "include_obfuscation": True})
    before = copy.deepcopy(body)
    assert ask_for_usage(body) is False
    assert body == before


def test_the_dialects_ask_as_their_api_needs() -> None:
    body = streaming()
    assert OPENAI_CHAT.ask_for_usage(body) is True
    assert body["stream_options"] == {"include_usage": True}
    # Anthropic streams report usage unasked.
    anthropic = {"model": "claude-x", "stream": True, "messages": []}
    assert ANTHROPIC.ask_for_usage(anthropic) is False
    assert anthropic == {"model": "claude-x", "stream": True, "messages": []}


# -- giving the stream back ------------------------------------------------------------


def test_the_usage_report_chunk_is_dropped() -> None:
    assert without_usage(frame_of(USAGE_CHUNK)) is None
    assert OPENAI_CHAT.unasked_usage(frame_of(USAGE_CHUNK)) is None
    # As some servers write it, with spaces.
    spaced = frames(b'data: {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3}}\n\n')
    assert without_usage(spaced[0]) is None


@pytest.mark.parametrize("ending", [b"\n\n", b"\r\n\r\n"])
def test_null_usage_is_removed_byte_exactly(ending: bytes) -> None:
    chunk = openai_chunk({"content": "Hello"})
    data = orjson.dumps(chunk)
    assert b',"usage":null,' in data
    (frame,) = frames(b"data: " + data + ending)
    out = without_usage(frame)
    assert out is not None
    assert out.raw == b"data: " + data.replace(b',"usage":null', b"") + ending
    assert out.data == data.replace(b',"usage":null', b"").decode()
    assert orjson.loads(out.data) == {k: v for k, v in chunk.items() if k != "usage"}
    assert OPENAI_CHAT.unasked_usage(frame) == out


def test_null_usage_with_spaces_is_removed_too() -> None:
    raw = b'data: {"id": "c1", "choices": [{"index": 0, "delta": {}}], "usage": null}\n\n'
    (frame,) = frames(raw)
    out = without_usage(frame)
    assert out is not None
    assert out.raw == b'data: {"id": "c1", "choices": [{"index": 0, "delta": {}}]}\n\n'
    assert orjson.loads(out.data or "") == {"id": "c1", "choices": [{"index": 0, "delta": {}}]}


def test_the_rest_of_the_frame_is_kept() -> None:
    raw = b'id: 7\ndata: {"id":"c1","choices":[],"usage":null}\n\n'
    (frame,) = frames(raw)
    out = without_usage(frame)
    assert out is not None
    assert out.raw == b'id: 7\ndata: {"id":"c1","choices":[]}\n\n'
    assert dataclasses.replace(out, raw=frame.raw, data=frame.data) == frame


def test_a_chunk_with_content_that_also_reports_usage_is_kept_whole() -> None:
    chunk = openai_chunk({"content": "last words"}, "stop") | {"usage": USAGE}
    frame = frame_of(chunk)
    assert without_usage(frame) is frame


def test_usage_null_written_inside_a_text_is_untouched() -> None:
    """JSON strings escape their quotes: text about `,"usage":null` (or a report) is the
    client's content, never the chunk's own field."""
    text = 'write ,"usage":null and , "usage": null or "usage":{"x":1} "choices":[]'
    without_key = {k: v for k, v in openai_chunk({"content": text}).items() if k != "usage"}
    frame = frame_of(without_key)
    assert b'\\"usage\\":null' in frame.raw
    assert without_usage(frame) is frame
    # With the chunk's own null field as well: only the field goes.
    out = without_usage(frame_of(openai_chunk({"content": text})))
    assert out is not None
    assert orjson.loads(out.data or "") == without_key


@pytest.mark.parametrize(
    "raw", [b"data: [DONE]\n\n", b": keep-alive\n\n", b"event: ping\ndata: {}\n\n"]
)
def test_frames_without_usage_pass_as_they_are(raw: bytes) -> None:
    (frame,) = frames(raw)
    assert without_usage(frame) is frame


def test_a_whole_stream_comes_back_as_without_the_ask() -> None:
    asked: list[Any] = [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Hi"}),
        openai_chunk({}, "stop"),
        USAGE_CHUNK,
        "[DONE]",
    ]
    unasked = [
        *({k: v for k, v in c.items() if k != "usage"} for c in asked[:3]),
        "[DONE]",
    ]
    kept = [out for f in frames(openai_sse(asked)) if (out := without_usage(f)) is not None]
    assert b"".join(out.raw for out in kept) == openai_sse(unasked)
