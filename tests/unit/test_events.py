"""One SSE event as the engines and policies see it (extproc/events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.events import StreamEvent
from extproc.sse import Frame
from tests.helpers.streams import frames


def test_from_frame_keeps_the_exact_bytes_and_name() -> None:
    raw = b'event: content_block_delta\r\ndata: {"type" : "x",  "n": 1}\r\n\r\n'
    (frame,) = frames(raw)
    event = StreamEvent.from_frame(frame)
    assert event.raw == raw and event.frame is frame
    assert event.name == "content_block_delta" and event.data == frame.data
    assert event.payload == {"type": "x", "n": 1}
    assert event.raw == raw  # reading the payload re-serializes nothing


def test_payload_is_parsed_once_and_only_when_asked() -> None:
    frame = Frame(raw=b'data: {"a": 1}\n\n', data='{"a": 1}')
    event = StreamEvent.from_frame(frame)
    frame.data = '{"a": [1, 2]}'  # nothing was parsed on arrival: the payload is read now
    first = event.payload
    assert first == {"a": [1, 2]}
    frame.data = '{"a": 3}'  # and only once
    assert event.payload is first


@pytest.mark.parametrize(
    "raw",
    [
        b": a comment only\n\n",
        b"event: ping\n\n",
        b"data: [DONE]\n\n",
        b"data: {not json\n\n",
        b"data: \n\n",
    ],
)
def test_payload_is_none_without_json_data(raw: bytes) -> None:
    (frame,) = frames(raw)
    event = StreamEvent.from_frame(frame)
    assert event.payload is None and event.raw == raw


def test_payload_may_be_any_json() -> None:
    (frame,) = frames(b"data: [1, 2]\n\n")
    assert StreamEvent.from_frame(frame).payload == [1, 2]
    (frame,) = frames(b"data: null\n\n")
    assert StreamEvent.from_frame(frame).payload is None


def test_made_events_keep_their_payload() -> None:
    payload: dict[str, Any] = {"type": "message_stop"}
    raw = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    event = StreamEvent.made(raw, payload, "message_stop")
    assert event.payload is payload and event.raw == raw and event.name == "message_stop"
    assert event.frame is None and event.data is None
    # The payload given wins even when it is not what the bytes say.
    odd = StreamEvent.made(b"data: {}\n\n", [1])
    assert odd.payload == [1] and odd.name is None
