"""What a RequestPipeline tells a real Observer: the summary of each kind of response
(streamed in each API, JSON), read back from the audit store; a response's rewrites
logged as one decision per policy and kind, once; and the active-streams gauge back to
zero however the request ends."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from extproc.core.audit import DecisionLog
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.gateway import Runtime
from extproc.pipeline import Continue, RequestPipeline
from extproc.policies.base import PolicyChain
from extproc.policies.pii_redaction import PiiRedactionPolicy
from tests.helpers.dialects import (
    MESSAGE,
    USAGE_CHUNK,
    anthropic_sse,
    anthropic_stream,
    openai_chunk,
    openai_sse,
)
from tests.helpers.observer import Observed
from tests.helpers.pipeline import request_headers, run_chunks, split
from tests.helpers.responses_streams import Text, render_stream
from tests.helpers.runtime import make_runtime
from tests.helpers.streams import frames

REQUEST_ID = "req-pipeline-1"


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[Observed]:
    made = Observed(tmp_path)
    yield made
    made.close()


def pipeline(observed: Observed, chain: PolicyChain | None = None) -> RequestPipeline:
    plain = make_runtime(chain)
    return RequestPipeline(Runtime(plain.gateway, plain.chains, observed.observer))


async def requested(p: RequestPipeline, path: str, body: dict[str, Any]) -> None:
    headers = request_headers(path, **{"x-request-id": REQUEST_ID})
    assert isinstance(p.on_request_headers(headers, False), Continue)
    assert isinstance(await p.on_request_body(orjson.dumps(body)), Continue)


def ended(p: RequestPipeline) -> None:
    """As the server ends every request: release it, then its outcome to the observers."""
    p.close()
    p.finish("ok" if p.complete else "incomplete")


def summary(observed: Observed) -> dict[str, Any]:
    stored = observed.stored(REQUEST_ID)["request"]
    assert stored is not None
    return dict(stored)


def assert_timed(record: dict[str, Any]) -> None:
    assert record["ttfb_ms"] is not None
    assert 0 <= record["ttfb_ms"] <= record["duration_ms"]


def pii() -> PolicyChain:
    return PolicyChain([PiiRedactionPolicy()])


def anthropic_body(stream: bool) -> dict[str, Any]:
    return {
        "model": "claude-x",
        "max_tokens": 50,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }


EMAILS = ["bob@example.com", "eve@example.org", "dan@example.net"]


def anthropic_with_emails() -> bytes:
    """A text stream mentioning three addresses, one of them split across deltas, and a
    final usage that says `input_tokens: 0` as SGLang does."""
    events = anthropic_stream(("text",), "end_turn")
    pieces = ["Write to bob@exam", "ple.com or eve@example.org, ", "else dan@example.net."]
    deltas = [e for e in events if e[0] == "content_block_delta"]
    first = events.index(deltas[0])
    events[first : first + len(deltas)] = [
        ("content_block_delta", {**deltas[0][1], "delta": {"type": "text_delta", "text": t}})
        for t in pieces
    ]
    usage = {"input_tokens": 0, "output_tokens": 89}
    for kind, payload in events:
        if kind == "message_delta":
            payload["usage"] = usage
    return anthropic_sse(events)


async def test_an_anthropic_stream_with_usage_and_redactions(observed: Observed) -> None:
    stream = anthropic_with_emails()
    p = pipeline(observed, pii())
    await requested(p, ANTHROPIC.path, anthropic_body(True))
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    assert observed.active_streams == 1
    out = await run_chunks(p, split(stream, [40, 300, 301, 700]))
    assert not any(email.encode() in out for email in EMAILS)
    ended(p)
    p.finish("ok")  # a second end changes nothing
    stored = observed.stored(REQUEST_ID)
    record = stored["request"]
    assert record["status"] == 200 and record["stream"] is True and record["outcome"] == "ok"
    # message_start's count stands; message_delta's 0 does not wipe it.
    assert (record["input_tokens"], record["output_tokens"]) == (472, 89)
    assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (0, 0)
    assert record["events"] == len(frames(stream))
    assert record["model"] == "claude-x" and record["provider"] == "anthropic"
    assert record["policies_acted"] == ["pii_redaction"]
    assert_timed(record)
    # The rewrites: one decision for the kind, with every match counted, logged once.
    (decision,) = stored["decisions"]
    assert decision["action"] == "redact" and decision["policy_type"] == "pii_redaction"
    assert decision["target"] == {"kind": "email", "count": 3, "where": "response"}
    assert observed.active_streams == 0


async def test_an_openai_stream_with_usage_on_its_last_chunk(observed: Observed) -> None:
    stream = openai_sse(
        [
            openai_chunk({"role": "assistant", "content": "1, 2"}),
            openai_chunk({}, "stop"),
            USAGE_CHUNK,
            "[DONE]",
        ]
    )
    p = pipeline(observed)
    body = {
        "model": "gpt-x",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count"}],
    }
    await requested(p, OPENAI_CHAT.path, body)
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    assert await run_chunks(p, split(stream, [17, 200])) == stream
    ended(p)
    record = summary(observed)
    assert record["api"] == OPENAI_CHAT.name and record["provider"] == "openai"
    assert record["status"] == 200 and record["stream"] is True and record["outcome"] == "ok"
    assert (record["input_tokens"], record["output_tokens"]) == (82, 51)
    assert record["cache_read_tokens"] == 0 and record["cache_write_tokens"] is None
    assert record["events"] == 4 and record["policies_acted"] == []
    assert_timed(record)
    assert observed.active_streams == 0


async def test_a_responses_stream_that_ends_incomplete(observed: Observed) -> None:
    stream = render_stream([Text(["The first", " part of a long"])], "incomplete")
    p = pipeline(observed, pii())
    body = {"model": "gpt-5", "stream": True, "input": "write a long story"}
    await requested(p, OPENAI_RESPONSES.path, body)
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    await run_chunks(p, split(stream, [100, 1000]))
    # The provider ended its response (cut at max_output_tokens): the stream is whole.
    assert p.complete
    ended(p)
    record = summary(observed)
    assert record["api"] == OPENAI_RESPONSES.name
    assert record["status"] == 200 and record["stream"] is True and record["outcome"] == "ok"
    # The usage rides on the terminal response.incomplete event.
    assert (record["input_tokens"], record["output_tokens"]) == (12, 31)
    assert record["cache_read_tokens"] == 0
    assert record["events"] == len(frames(stream))
    assert_timed(record)
    assert observed.active_streams == 0


async def test_a_json_response(observed: Observed) -> None:
    message = copy.deepcopy(MESSAGE)
    message["content"] = [{"type": "text", "text": "write to bob@example.com"}]
    message["usage"] = {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
    }
    p = pipeline(observed, pii())
    await requested(p, ANTHROPIC.path, anthropic_body(False))
    p.on_response_headers({":status": "200", "content-type": "application/json"}, False)
    assert observed.active_streams == 0  # not a stream
    out = await run_chunks(p, [orjson.dumps(message)])
    assert b"bob@example.com" not in out
    ended(p)
    stored = observed.stored(REQUEST_ID)
    record = stored["request"]
    assert record["status"] == 200 and record["stream"] is False and record["outcome"] == "ok"
    assert (record["input_tokens"], record["output_tokens"]) == (10, 20)
    assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (4, 2)
    assert record["events"] == 0
    assert_timed(record)
    (decision,) = stored["decisions"]
    assert decision["target"] == {"kind": "email", "count": 1, "where": "response"}


async def test_a_stream_closed_midway_leaves_no_active_stream(observed: Observed) -> None:
    stream = anthropic_with_emails()
    p = pipeline(observed, pii())
    await requested(p, ANTHROPIC.path, anthropic_body(True))
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    await p.on_response_body(stream[:400], False)
    assert observed.active_streams == 1
    # Envoy cancels the stream (the client went away): the server closes, then finishes.
    p.close()
    p.finish("cancelled")
    assert observed.active_streams == 0
    record = summary(observed)
    assert record["outcome"] == "cancelled" and record["status"] == 200
    # What message_start said, the last usage seen.
    assert record["input_tokens"] == 472 and record["output_tokens"] == 2
    (span,) = observed.spans()
    assert span.attributes is not None and span.attributes["gateway.outcome"] == "cancelled"


class BrokenLog(DecisionLog):
    def flush(self) -> None:
        raise RuntimeError("the decision log broke")


async def test_the_summary_is_written_even_if_logging_the_rewrites_fails(
    observed: Observed,
) -> None:
    p = pipeline(observed, pii())
    await requested(p, ANTHROPIC.path, anthropic_body(True))
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    assert observed.active_streams == 1

    p.decisions = BrokenLog()
    p.close()
    with pytest.raises(RuntimeError, match="the decision log broke"):
        p.finish("cancelled")
    assert observed.active_streams == 0
    assert summary(observed)["outcome"] == "cancelled"
    assert len(observed.spans()) == 1
