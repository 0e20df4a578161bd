"""Scripted raw responses (`x-mock-script`) for testing how the gateway treats bad upstreams."""

from __future__ import annotations

import orjson

SCRIPT_NAMES = ("garbage", "giant-event", "html-error")


def _anthropic(event: str, payload: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def garbage(api: str) -> list[bytes]:
    """A stream with frames no parser likes, around a valid start and end."""
    junk = [
        b"event: weird\nfoo: bar\n\n",  # no data line at all
        b"data: {not json at all\n\n",  # data that is not JSON
        b"hello world\n\n",  # a line that is no field
        b'data: {"type": "content_block_delta", "index": "zero"}\n\n',  # JSON, wrong shape
    ]
    if api == "anthropic":
        start = _anthropic(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_garbage",
                    "type": "message",
                    "role": "assistant",
                    "model": "mock",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            },
        )
        return [start, *junk, _anthropic("message_stop", {"type": "message_stop"})]
    return [*junk, b"data: [DONE]\n\n"]


def giant_event(api: str, size: int) -> list[bytes]:
    """One event whose data is `size` bytes long."""
    text = "x" * size
    if api == "anthropic":
        return [
            _anthropic(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            ),
            _anthropic("message_stop", {"type": "message_stop"}),
        ]
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "mock",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return [b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: [DONE]\n\n"]
