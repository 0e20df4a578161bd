"""The stream-engine shape and the engine that changes nothing (extproc/engine/stream.py)."""

from __future__ import annotations

import asyncio
import json

from extproc.dialects.registry import ANTHROPIC
from extproc.engine.stream import ForwardEngine, StreamEngine
from extproc.policies.base import PolicyChain
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.engine import MESSAGE_START, TEXT_START, BlockBash, run_pipeline, text_delta
from tests.helpers.streams import frames


async def test_forward_engine_sends_every_frame_as_its_bytes() -> None:
    raw = b": hi\r\n\r\nevent: x\ndata: {not json\n\ndata: [DONE]\r\r" + b"data: tail"
    engine: StreamEngine = ForwardEngine()
    parsed = frames(raw)
    out = await engine.feed(parsed[:2]) + await engine.feed(parsed[2:]) + await engine.flush()
    assert out == raw
    assert await engine.feed([]) == b"" and await engine.flush() == b""
    engine.close()


async def test_dialect_engines_are_stream_engines() -> None:
    engine: StreamEngine = ANTHROPIC.stream_engine(PolicyChain([]), api_request(anthropic_body()))
    assert await engine.feed(frames(MESSAGE_START)) == MESSAGE_START
    assert await engine.flush() == b""
    engine.close()


def test_added_events_never_merge_into_a_truncated_last_event() -> None:
    cut = MESSAGE_START + TEXT_START + text_delta("hi")[:-30]  # ends inside an event
    # No engine (a chain that reads no responses) and the Anthropic engine alike.
    for chain in (PolicyChain([]), PolicyChain([BlockBash()])):
        out = asyncio.run(run_pipeline(ANTHROPIC, chain, cut, [], "text/event-stream"))
        last = out.strip().split(b"\n\n")[-1]
        assert last.startswith(b"event: error\ndata: ")
        assert json.loads(last.split(b"data: ", 1)[1])["type"] == "error"
