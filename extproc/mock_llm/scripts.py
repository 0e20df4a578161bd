"""Scripted raw responses (`x-mock-script`) for testing how the gateway treats bad upstreams."""

from __future__ import annotations

import orjson

from .responses_format import Rendering, usage
from .responses_stream import encode, render_stream
from .scenario import Plan, Usage

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
    if api == "responses":
        # The SDK insists on `response.created` first; the junk sits between it and the end.
        ctx = _responses_context()
        created = {"type": "response.created", "sequence_number": 0}
        created["response"] = ctx.envelope("in_progress", [], None)
        done = {"type": "response.completed", "sequence_number": 2}
        done["response"] = ctx.envelope("completed", [], usage(_plan(""), 0))
        wrong = b'data: {"type": "response.output_text.delta", "sequence_number": 1, '
        wrong += b'"output_index": "zero"}\n\n'
        return [*encode([created]), *junk[:3], wrong, *encode([done])]
    return [*junk, b"data: [DONE]\n\n"]


def giant_event(api: str, size: int) -> list[bytes]:
    """One event whose data is `size` bytes long."""
    text = "x" * size
    if api == "responses":
        # A whole valid answer, as the SDK wants one: its single text delta is the giant
        # event, and the `.done` events and `response.completed` repeat the text.
        return render_stream(_plan(text), _responses_context())
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


def _responses_context() -> Rendering:
    return Rendering.make({"model": "mock"}, "0" * 64, created=0)


def _plan(text: str) -> Plan:
    chunks = (text,) if text else ()
    return Plan(chunks, (), "end_turn", Usage(1, max(1, len(text) // 4)))
