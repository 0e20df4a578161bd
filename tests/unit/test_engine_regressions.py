"""Regressions found by review: each drives the pipeline with the stream that broke it."""

from __future__ import annotations

import asyncio
import json

import orjson

from extproc.apis.kind import ApiKind
from extproc.policies.base import ApiRequest, Policy, PolicyChain, Reject, Span
from tests.e2e.streams import anthropic_text, openai_text, validate_stream
from tests.unit.test_engine import BlockBash, Redact, run_pipeline

A_PATH, O_PATH = "/v1/messages", "/v1/chat/completions"


def sse(event: str, payload: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def chunk(delta: dict, finish: str | None = None, **top: object) -> bytes:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "g",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **top,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    },
)
TEXT_START = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)


def text_delta(text: str, index: int = 0) -> bytes:
    return sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        },
    )


def stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def end(reason: str) -> bytes:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
    ) + sse("message_stop", {"type": "message_stop"})


class DropMarker(Policy):
    """Deletes "[[END]]": a rewrite that can shorten the text at its very end."""

    rewrites_text = True
    holdback = 7

    def rewriter(self, request: ApiRequest) -> DropMarker:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        at = text.find("[[END]]", start)
        return [Span(at, at + 7, "")] if at >= 0 else []


def run(api: ApiKind, chain: PolicyChain, data: bytes) -> bytes:
    return asyncio.run(run_pipeline(api, chain, data, [], "text/event-stream"))


def test_rewrite_deleting_the_end_of_a_text_keeps_the_rest() -> None:
    out = run(
        ApiKind.ANTHROPIC,
        PolicyChain([DropMarker()]),
        START + TEXT_START + text_delta("Hello world [[END]]") + stop(0) + end("end_turn"),
    )
    assert anthropic_text(out) == "Hello world " and validate_stream(A_PATH, {}, out) == []


def test_held_text_flushed_when_block_never_stopped_or_error_arrives() -> None:
    out = run(
        ApiKind.ANTHROPIC,
        PolicyChain([Redact()]),
        START + TEXT_START + text_delta("Hello there, this is the end") + end("end_turn"),
    )
    assert anthropic_text(out) == "Hello there, this is the end"
    assert validate_stream(A_PATH, {}, out) == []
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    out = run(
        ApiKind.ANTHROPIC,
        PolicyChain([Redact()]),
        START + TEXT_START + text_delta("Partial answer here") + error,
    )
    assert anthropic_text(out) == "Partial answer here" and out.endswith(error)


def test_stop_reason_fixed_when_an_unfinished_tool_call_is_dropped() -> None:
    tool = sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "get_weather", "input": {}},
        },
    )
    out = run(
        ApiKind.ANTHROPIC,
        PolicyChain([BlockBash()]),
        START + TEXT_START + text_delta("hi") + stop(0) + tool + end("tool_use"),
    )
    assert b'"stop_reason":"end_turn"' in out and validate_stream(A_PATH, {}, out) == []


def test_added_events_never_merge_into_a_truncated_last_event() -> None:
    cut = START + TEXT_START + text_delta("hi")[:-30]  # ends inside an event, no blank line
    for chain in (PolicyChain([]), PolicyChain([BlockBash()])):
        out = run(ApiKind.ANTHROPIC, chain, cut)
        last = out.strip().split(b"\n\n")[-1]
        assert last.startswith(b"event: error\ndata: ")
        assert json.loads(last.split(b"data: ", 1)[1])["type"] == "error"


def test_role_goes_first_when_the_first_chunk_is_rewritten() -> None:
    data = (
        chunk({"role": "assistant", "content": "key AKIAABCDEFGHIJKLMNOP ok"})
        + chunk({}, "stop")
        + b"data: [DONE]\n\n"
    )
    out = run(ApiKind.OPENAI, PolicyChain([Redact()]), data)
    assert validate_stream(O_PATH, {}, out) == []
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
    out = run(ApiKind.OPENAI, PolicyChain([Redact()]), data)
    assert out.count(b"[DONE]") == 1 and b"late" not in out
    assert out.count(b'"total_tokens":3') == 1


class Raises(Policy):
    async def on_request(self, request: ApiRequest) -> Reject | None:
        raise ValueError("bug in a policy")


async def test_request_policy_failure_is_an_in_format_500() -> None:
    from extproc.pipeline import Reject as Refused
    from tests.unit.test_pipeline import make, request_headers

    p = make(PolicyChain([Raises()]))
    p.on_request_headers(request_headers(), False)
    out = await p.on_request_body(b'{"model":"claude-x","messages":[]}')
    assert isinstance(out, Refused) and out.status == 500
    assert json.loads(out.body)["error"]["type"] == "api_error" and b"bug" not in out.body
