"""The policy engine for OpenAI chat completion streams
(extproc/dialects/openai/stream_engine.py): alone, fed SSE frames, and through the
pipeline with the streams that once broke it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from extproc.dialects.registry import OPENAI_CHAT
from extproc.policies.base import PolicyChain
from tests.helpers.dialects import api_request, openai_body, openai_chunks, openai_sse
from tests.helpers.engine import (
    BlockBash,
    Redact,
    StopOnDelete,
    plan,
    run_pipeline,
    streams,
)
from tests.helpers.streams import frames, openai_text, payloads, validate_stream

PATH = OPENAI_CHAT.path


def chunk(delta: dict[str, Any], finish: str | None = None, **top: object) -> bytes:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "g",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **top,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def run(chain: PolicyChain, data: bytes) -> bytes:
    return asyncio.run(run_pipeline(OPENAI_CHAT, chain, data, [], "text/event-stream"))


async def engine_output(chain: PolicyChain, raw: bytes, flush: bool = True) -> bytes:
    """The engine fed one frame at a time, then flushed."""
    engine = OPENAI_CHAT.stream_engine(chain, api_request(openai_body(), OPENAI_CHAT))
    out = b""
    for frame in frames(raw):
        out += await engine.feed([frame])
    if flush:
        out += await engine.flush()
    engine.close()
    return out


# -- through the pipeline ----------------------------------------------------------------


async def test_block_response_stops_with_message_and_valid_end() -> None:
    chain = PolicyChain([StopOnDelete()])
    stream, _ = streams(plan(["ok "], ["get_weather", "delete_all"]), OPENAI_CHAT)
    out = await run_pipeline(OPENAI_CHAT, chain, stream, [], "text/event-stream")
    assert validate_stream(PATH, {}, out) == []
    assert openai_text(out).replace("\n\n", "") == "ok stopped"
    assert b"get_weather" not in out and b"delete_all" not in out


def test_role_goes_first_when_the_first_chunk_is_rewritten() -> None:
    data = (
        chunk({"role": "assistant", "content": "key AKIAABCDEFGHIJKLMNOP ok"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    out = run(PolicyChain([Redact()]), data)
    assert validate_stream(PATH, {}, out) == []
    assert openai_text(out) == "key [REDACTED] ok"


def test_nothing_after_done_and_usage_only_once() -> None:
    data = (
        chunk({"role": "assistant", "content": ""})
        + chunk({"content": "hi"})
        + chunk({}, "stop", usage={"total_tokens": 3})
        + b"data: [DONE]\n\n"
        + chunk({"content": "late"})
        + b"data: [DONE]\n\n"
    )
    out = run(PolicyChain([Redact()]), data)
    assert out.count(b"[DONE]") == 1 and b"late" not in out
    assert out.count(b'"total_tokens":3') == 1


# -- the engine alone --------------------------------------------------------------------


async def test_untouched_chunks_leave_as_their_bytes() -> None:
    raw = openai_sse([*openai_chunks(), "[DONE]"])
    assert await engine_output(PolicyChain([Redact()]), raw) == raw
    text = chunk({"role": "assistant", "content": ""}) + chunk({"content": "hi"})
    text += chunk({}, "stop") + b"data: [DONE]\n\n"
    for chain in (PolicyChain([Redact()]), PolicyChain([BlockBash()])):
        assert await engine_output(chain, text) == text


async def test_blocked_calls_become_content_and_the_rest_are_renumbered() -> None:
    stream, _ = streams(plan(["hi"], ["bash", "get_weather"]), OPENAI_CHAT)
    out = await engine_output(PolicyChain([BlockBash()]), stream)
    assert validate_stream(PATH, {}, out) == []
    assert openai_text(out) == "hi\n\nblocked bash"
    calls = [
        call
        for p in payloads(out)
        for choice in p["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "get_weather")]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"command": "ls -la /tmp"}
    finishes = [c["finish_reason"] for p in payloads(out) for c in p["choices"]]
    assert finishes[-1] == "tool_calls"


async def test_allowed_calls_leave_as_the_providers_own_chunks() -> None:
    stream, _ = streams(plan(["hi"], ["get_weather", "get_time"]), OPENAI_CHAT)
    assert await engine_output(PolicyChain([BlockBash()]), stream) == stream


async def test_a_role_that_opened_a_blocked_call_still_opens_the_message() -> None:
    call = {"index": 0, "id": "c1", "type": "function"}
    data = (
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**call, "function": {"name": "bash", "arguments": ""}}],
            }
        )
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command": "ls"}'}}]})
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    out = await engine_output(PolicyChain([BlockBash()]), data)
    assert validate_stream(PATH, {}, out) == []
    first = payloads(out)[0]["choices"][0]["delta"]
    assert first == {"role": "assistant"}
    assert openai_text(out) == "blocked bash" and b'"tool_calls"' not in out


@pytest.mark.parametrize("tool", ["bash", "get_time"])
async def test_content_after_held_calls_keeps_the_role_first(tool: str) -> None:
    call = {"index": 0, "id": "c1", "type": "function"}
    opening = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{**call, "function": {"name": tool, "arguments": "{}"}}],
    }
    data = chunk(opening) + chunk({"content": "ok"}) + chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    out = await engine_output(PolicyChain([BlockBash()]), data)
    assert validate_stream(PATH, {}, out) == []
    assert payloads(out)[0]["choices"][0]["delta"] == {"role": "assistant"}


async def test_a_cut_stream_keeps_the_role_of_its_unfinished_call() -> None:
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "bash", "arguments": "{"},
    }
    out = await engine_output(
        PolicyChain([BlockBash()]), chunk({"role": "assistant", "tool_calls": [call]})
    )
    assert [p["choices"][0]["delta"] for p in payloads(out)] == [{"role": "assistant"}]


async def test_a_repeated_finish_does_not_send_the_calls_twice() -> None:
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "get_time", "arguments": "{}"},
    }
    data = chunk({"role": "assistant", "tool_calls": [call]}) + chunk({}, "tool_calls")
    data += chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    out = await engine_output(PolicyChain([BlockBash()]), data)
    assert out.count(b'"get_time"') == 1


async def test_finish_reason_stop_when_every_call_is_blocked() -> None:
    stream, _ = streams(plan([], ["bash"]), OPENAI_CHAT)
    out = await engine_output(PolicyChain([BlockBash()]), stream)
    assert validate_stream(PATH, {}, out) == []
    assert openai_text(out) == "blocked bash" and b'"tool_calls"' not in out
    finishes = [c["finish_reason"] for p in payloads(out) for c in p["choices"]]
    assert finishes[-1] == "stop"


async def test_flush_releases_held_text_of_unfinished_choices() -> None:
    data = chunk({"role": "assistant", "content": ""}) + chunk({"content": "held back"})
    out = await engine_output(PolicyChain([Redact()]), data, flush=False)
    assert openai_text(out) == ""  # shorter than the hold-back window
    assert openai_text(await engine_output(PolicyChain([Redact()]), data)) == "held back"


async def test_errors_and_unknown_shapes_pass_behind_held_text() -> None:
    error = b'data: {"error":{"message":"x","type":"server_error"}}\n\n'
    data = chunk({"role": "assistant", "content": ""}) + chunk({"content": "abc"}) + error
    out = await engine_output(PolicyChain([Redact()]), data)
    assert openai_text(out) == "abc" and out.endswith(error)
