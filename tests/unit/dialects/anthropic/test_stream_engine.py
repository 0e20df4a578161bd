"""The policy engine for Anthropic Messages streams
(extproc/dialects/anthropic/stream_engine.py): alone, fed SSE frames, and through the
pipeline with the streams that once broke it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span
from extproc.dialects.anthropic.stream_engine import AnthropicStreamEngine, peek_index
from extproc.dialects.registry import ANTHROPIC
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from tests.helpers.dialects import anthropic_body, anthropic_sse, anthropic_stream, api_request
from tests.helpers.engine import (
    MESSAGE_START,
    TEXT_START,
    BlockBash,
    Redact,
    StopOnDelete,
    anthropic_event,
    block_stop,
    message_end,
    plan,
    run_pipeline,
    streams,
    text_delta,
)
from tests.helpers.streams import anthropic_text, frames, payloads, validate_stream

PATH = ANTHROPIC.path


def run(chain: PolicyChain, data: bytes) -> bytes:
    return asyncio.run(run_pipeline(ANTHROPIC, chain, data, [], "text/event-stream"))


async def engine_output(chain: PolicyChain, raw: bytes, flush: bool = True) -> bytes:
    """The engine fed one frame at a time, then flushed."""
    engine = ANTHROPIC.stream_engine(chain, api_request(anthropic_body()))
    out = b""
    for frame in frames(raw):
        out += await engine.feed([frame])
    if flush:
        out += await engine.flush()
    engine.close()
    return out


class DropMarker(Policy[PolicyConfig]):
    """Deletes "[[END]]": a rewrite that can shorten the text at its very end."""

    rewrites_text = True
    holdback = 7

    def rewriter(self, request: ApiRequest) -> DropMarker:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        at = text.find("[[END]]", start)
        return [Span(at, at + 7, "")] if at >= 0 else []


class Observer(Policy[PolicyConfig]):
    observes_events = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        self.seen.append(event_type)


# -- through the pipeline ----------------------------------------------------------------


async def test_block_response_stops_with_message_and_valid_end() -> None:
    chain = PolicyChain([StopOnDelete()])
    stream, _ = streams(plan(["ok "], ["get_weather", "delete_all"]), ANTHROPIC)
    out = await run_pipeline(ANTHROPIC, chain, stream, [], "text/event-stream")
    assert validate_stream(PATH, {}, out) == []
    assert anthropic_text(out).replace("\n\n", "") == "ok stopped"
    assert b"get_weather" not in out and b"delete_all" not in out


def test_rewrite_deleting_the_end_of_a_text_keeps_the_rest() -> None:
    out = run(
        PolicyChain([DropMarker()]),
        MESSAGE_START
        + TEXT_START
        + text_delta("Hello world [[END]]")
        + block_stop(0)
        + message_end("end_turn"),
    )
    assert anthropic_text(out) == "Hello world " and validate_stream(PATH, {}, out) == []


def test_held_text_flushed_when_block_never_stopped_or_error_arrives() -> None:
    out = run(
        PolicyChain([Redact()]),
        MESSAGE_START
        + TEXT_START
        + text_delta("Hello there, this is the end")
        + message_end("end_turn"),
    )
    assert anthropic_text(out) == "Hello there, this is the end"
    assert validate_stream(PATH, {}, out) == []
    error = anthropic_event(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
    )
    out = run(
        PolicyChain([Redact()]),
        MESSAGE_START + TEXT_START + text_delta("Partial answer here") + error,
    )
    assert anthropic_text(out) == "Partial answer here" and out.endswith(error)


def test_stop_reason_fixed_when_an_unfinished_tool_call_is_dropped() -> None:
    tool = anthropic_event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}},
        },
    )
    out = run(
        PolicyChain([BlockBash()]),
        MESSAGE_START
        + TEXT_START
        + text_delta("hi")
        + block_stop(0)
        + tool
        + message_end("tool_use"),
    )
    assert b'"stop_reason":"end_turn"' in out and validate_stream(PATH, {}, out) == []


# -- the engine alone --------------------------------------------------------------------


async def test_untouched_events_leave_as_their_bytes() -> None:
    raw = anthropic_sse(anthropic_stream())
    for chain in (PolicyChain([BlockBash()]), PolicyChain([Redact()])):
        assert await engine_output(chain, raw) == raw


async def test_blocked_call_becomes_text_and_blocks_are_renumbered() -> None:
    stream, _ = streams(plan(["hi"], ["bash", "get_weather"]), ANTHROPIC)
    out = await engine_output(PolicyChain([BlockBash()]), stream)
    assert validate_stream(PATH, {}, out) == []
    starts = [p for p in payloads(out) if p["type"] == "content_block_start"]
    assert [(p["index"], p["content_block"]["type"]) for p in starts] == [
        (0, "text"),
        (1, "text"),
        (2, "tool_use"),
    ]
    assert starts[2]["content_block"]["name"] == "get_weather"
    assert anthropic_text(out) == "hiblocked bash"
    assert b'"stop_reason":"tool_use"' in out


async def test_second_message_start_and_events_after_the_end_are_dropped() -> None:
    raw = anthropic_sse(anthropic_stream(("text",), "end_turn"))
    extra = MESSAGE_START + text_delta("late")
    doubled = raw.replace(b"event: ping", MESSAGE_START + b"event: ping", 1) + extra
    out = await engine_output(PolicyChain([Redact()]), doubled)
    assert out.count(b"event: message_start") == 1 and b"late" not in out
    assert validate_stream(PATH, {}, out) == []


async def test_flush_closes_blocks_the_upstream_left_open() -> None:
    out = await engine_output(
        PolicyChain([Redact()]), MESSAGE_START + TEXT_START + text_delta("abc")
    )
    assert anthropic_text(out) == "abc"
    assert payloads(out)[-1] == {"type": "content_block_stop", "index": 0}


async def test_observers_see_every_event() -> None:
    observer = Observer()
    raw = anthropic_sse(anthropic_stream(("text",), "end_turn"))
    out = await engine_output(PolicyChain([observer]), raw + b": comment\n\n")
    assert out == raw  # observing changes nothing (the comment after message_stop is dropped)
    assert observer.seen == [kind for kind, _ in anthropic_stream(("text",), "end_turn")] + ["None"]


async def test_close_cancels_pending_decisions() -> None:
    started = asyncio.Event()

    class Slow(Policy[PolicyConfig]):
        gates_tool_calls = True

        async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
            started.set()
            await asyncio.sleep(3600)

    engine = AnthropicStreamEngine(PolicyChain([Slow()]), api_request(anthropic_body()))
    stream, _ = streams(plan(["hi"], ["bash"]), ANTHROPIC)
    before_end = stream[: stream.index(b"event: message_delta")]
    await engine.feed(frames(before_end))
    await asyncio.wait_for(started.wait(), 5)
    assert engine.gate is not None
    (task,) = engine.gate.tasks
    engine.close()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()


def test_peek_index() -> None:
    assert peek_index('{"type":"content_block_delta","index":12,"delta":{}}') == 12
    assert peek_index('{"type":"ping"}') is None and peek_index(None) is None
    late = '{"type":"content_block_delta","delta":{"text":"' + "x" * 80 + '"},"index":3}'
    assert peek_index(late) is None  # only the first bytes are looked at


async def test_events_the_engine_writes_are_valid_json_events() -> None:
    out = await engine_output(PolicyChain([BlockBash()]), streams(plan([], ["bash"]), ANTHROPIC)[0])
    for frame in frames(out):
        assert frame.event == orjson.loads(frame.data or "null")["type"]
