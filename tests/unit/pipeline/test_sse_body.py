"""A streamed response body through the chain: every stream ends validly for its API,
whatever the upstream or a policy did."""

from __future__ import annotations

import pytest

from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.pipeline import ResponseMode
from extproc.pipeline.sse_body import SseBody
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.noop import NoOpPolicy
from tests.helpers.pipeline import (
    ANTHROPIC_STREAM,
    ANTHROPIC_TOOL_STREAM,
    OPENAI_STREAM,
    OPENAI_TOOL_STREAM,
    Broken,
    Slow,
    Touching,
    run_chunks,
    started,
    stream_of,
)
from tests.helpers.streams import validate_stream

OPENAI_ERROR = b'data: {"error":{"message":"Overloaded","type":"server_error"}}\n\n'
DONE = b"data: [DONE]\n\n"
EARLY_END = "upstream ended the stream before it was complete"


def sse_body(
    dialect: Dialect,
    chain: PolicyChain | None = None,
    max_frame_bytes: int = 1 << 20,
    timeout: float = 5.0,
    validate: bool = False,
) -> SseBody:
    request = ApiRequest(
        dialect=dialect, path=dialect.path, model="m-1", stream=True, body={"messages": []}
    )
    chain = chain or PolicyChain([NoOpPolicy()])
    return SseBody(dialect, request, chain, max_frame_bytes, timeout, "POST /t", validate)


async def whole(body: SseBody, data: bytes) -> bytes:
    out = await body.feed(data, True)
    assert out.end_of_stream
    return out.data


CHAINS = [None, PolicyChain([Touching()])]


# -- terminators ------------------------------------------------------------------------


async def test_stream_without_terminator_gets_error_event() -> None:
    p = await started()
    cut = ANTHROPIC_STREAM.index(b"event: content_block_stop")
    out = await run_chunks(p, [ANTHROPIC_STREAM[:cut]])
    assert out.startswith(ANTHROPIC_STREAM[:cut])
    assert out[cut:].startswith(b"event: error\ndata: ")
    p = await started(OPENAI_CHAT)
    out = await run_chunks(p, [OPENAI_STREAM[:40]])
    assert out.endswith(b"data: [DONE]\n\n") and b'"error"' in out


# Where each stream is cut at an event boundary, after its first events.
CUTS = {
    ANTHROPIC: ANTHROPIC_STREAM.index(b"event: content_block_stop"),
    OPENAI_CHAT: OPENAI_STREAM.index(b"data: ", 10),
}


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_terminator_repair(dialect: Dialect, chain: PolicyChain | None) -> None:
    stream, cut = stream_of(dialect), CUTS[dialect]
    body = sse_body(dialect, chain)
    out = await whole(body, stream[:cut])
    assert out.endswith(dialect.stream_error(EARLY_END))
    if chain is None:
        assert out == stream[:cut] + dialect.stream_error(EARLY_END)
    assert validate_stream(dialect.path, {}, out) == []
    # A complete stream gets nothing added.
    assert await whole(sse_body(dialect, chain), stream) == stream


@pytest.mark.parametrize("chain", CHAINS)
async def test_openai_stream_ended_after_an_in_stream_error_gets_only_done(
    chain: PolicyChain | None,
) -> None:
    first = OPENAI_STREAM[: OPENAI_STREAM.index(b"data:", 10)].replace(b"\r\n", b"\n")
    body = sse_body(OPENAI_CHAT, chain)
    out = await whole(body, first + OPENAI_ERROR)
    assert out == first + OPENAI_ERROR + DONE
    assert out.count(b'"error"') == 1


async def test_anthropic_error_event_is_a_terminator() -> None:
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    head = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: ping")]
    assert await whole(sse_body(ANTHROPIC), head + error) == head + error
    # Unnamed, its payload's type says so.
    unnamed = b'data: {"type": "message_stop"}\n\n'
    assert await whole(sse_body(ANTHROPIC), head + unnamed) == head + unnamed


async def test_last_frame_without_blank_line_is_delivered() -> None:
    p = await started()
    out = await run_chunks(p, [ANTHROPIC_STREAM[:-2]])
    assert out == ANTHROPIC_STREAM[:-2]


async def test_last_frame_without_blank_line_is_ended_before_an_added_error() -> None:
    cut = ANTHROPIC_STREAM.index(b"event: content_block_stop") - 2  # its blank line cut off
    out = await whole(sse_body(ANTHROPIC), ANTHROPIC_STREAM[:cut])
    assert out == ANTHROPIC_STREAM[: cut + 2] + ANTHROPIC.stream_error(EARLY_END)


# -- oversized events -------------------------------------------------------------------


async def test_frame_too_large_fails_in_format_and_ends() -> None:
    p = await started(max_sse_frame_bytes=100)
    res = await p.on_response_body(b"event: content_block_delta\ndata: " + b"x" * 200, False)
    assert res.end_of_stream and res.data.startswith(b"event: error\n")
    assert b"larger than 100 bytes" in res.data
    later = await p.on_response_body(b"more\n\n", True)
    assert later.data == b"" and not later.end_of_stream


async def test_oversized_event_fails_the_same_whole_or_split() -> None:
    first = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: ping")]
    giant = b"event: content_block_delta\ndata: " + b"x" * 400 + b"\n\n"
    for chunks in ([first + giant], [first + giant[:50], giant[50:]]):
        p = await started(max_sse_frame_bytes=len(first) + 10)
        out = bytearray()
        for chunk in chunks:
            res = await p.on_response_body(chunk, False)
            out += res.data
            if res.end_of_stream:
                break
        assert res.end_of_stream
        # Everything complete before the oversized event is delivered, then the error.
        assert out.startswith(first)
        assert out[len(first) :].startswith(b"event: error\ndata: ")


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_oversized_frame_is_an_in_format_error_after_what_came_before(
    dialect: Dialect, chain: PolicyChain | None
) -> None:
    stream = stream_of(dialect).replace(b"\r\n", b"\n")
    head = stream[: stream.index(b"\n\n") + 2]
    body = sse_body(dialect, chain, max_frame_bytes=len(head) + 10)
    out = await body.feed(head + b"data: " + b"y" * 500 + b"\n\n" + stream[len(head) :], False)
    assert out.end_of_stream and body.terminated
    limit = len(head) + 10
    error = dialect.stream_error(f"upstream sent an SSE event larger than {limit} bytes")
    assert out.data.endswith(error)
    if chain is None:
        assert out.data == head + error


# -- policy failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "text"),
    [(Slow(), b"did not finish in time"), (Broken(), b"failed while processing")],
)
async def test_policy_failure_ends_stream_in_format(
    policy: Policy[PolicyConfig], text: bytes
) -> None:
    p = await started(OPENAI_CHAT, PolicyChain([policy]), policy_timeout_s=0.05)
    res = await p.on_response_body(OPENAI_TOOL_STREAM, False)
    assert res.end_of_stream and text in res.data and res.data.endswith(b"data: [DONE]\n\n")
    p.close()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (Slow(), "a gateway policy did not finish in time"),
        (Broken(), "a gateway policy failed while processing the response"),
    ],
)
@pytest.mark.parametrize(
    ("dialect", "stream"), [(ANTHROPIC, ANTHROPIC_TOOL_STREAM), (OPENAI_CHAT, OPENAI_TOOL_STREAM)]
)
async def test_policy_timeout_or_failure_is_an_in_format_error(
    dialect: Dialect, stream: bytes, policy: Policy[PolicyConfig], message: str
) -> None:
    body = sse_body(dialect, PolicyChain([policy]), timeout=0.05)
    out = await body.feed(stream, False)
    assert out.end_of_stream and body.terminated
    # Events before the tool call were final already: they go, then the error ends it.
    assert out.data.endswith(dialect.stream_error(message))
    assert out.data.count(dialect.stream_error(message)) == 1
    assert validate_stream(dialect.path, {}, out.data) == []
    body.close()


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_validation_counts_violations(dialect: Dialect) -> None:
    body = sse_body(dialect, validate=True)
    assert body.mode is ResponseMode.SSE
    await whole(body, stream_of(dialect))
    assert body.violations == 0
    assert sse_body(dialect).violations is None  # not validated
    # A stream the gateway forwards as it came, with an event out of place.
    if dialect is ANTHROPIC:
        bad = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,' + (
            b'"delta":{"type":"text_delta","text":"x"}}\n\n' + ANTHROPIC_STREAM
        )
    else:
        bad = OPENAI_STREAM.replace(b'"finish_reason":"stop"', b'"finish_reason":"tool_calls"')
    body = sse_body(dialect, validate=True)
    out = await whole(body, bad)
    found = validate_stream(dialect.path, {}, out)
    assert found and body.violations == len(found)
    assert body.validator is not None and body.validator.violations == found


async def test_events_are_counted() -> None:
    body = sse_body(ANTHROPIC)
    await body.feed(ANTHROPIC_STREAM[:100], False)
    await body.feed(ANTHROPIC_STREAM[100:], True)
    assert body.events_in == 8


@pytest.mark.parametrize(
    ("dialect", "foreign_end"),
    [
        (ANTHROPIC, DONE),
        (OPENAI_CHAT, b'event: message_stop\ndata: {"type":"message_stop"}\n\n'),
    ],
    ids=["anthropic-ending-in-done", "openai-ending-in-message_stop"],
)
async def test_only_the_apis_own_terminator_ends_its_stream(
    dialect: Dialect, foreign_end: bytes
) -> None:
    """Another API's terminator does not end a stream: the client still gets its own
    API's error ending, so its SDK does not wait for more."""
    out = await whole(sse_body(dialect), foreign_end)
    assert out.startswith(foreign_end)
    assert out[len(foreign_end) :] == dialect.stream_error(EARLY_END)


def _events(stream: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in stream.replace(b"\r\n", b"\n").split(b"\n\n") if e]


class SwapCase(Policy[PolicyConfig]):
    """Rewrites text to text of the same length: a chunk changes, not its size."""

    rewrites_text = True
    holdback = 0

    def rewriter(self, request: ApiRequest) -> SwapCase:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        return [Span(start, len(text), text[start:].swapcase())] if start < len(text) else []


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
@pytest.mark.parametrize("chain", [*CHAINS, PolicyChain([SwapCase()])])
async def test_validation_of_chunks_that_pass_unchanged_reuses_their_frames(
    dialect: Dialect, chain: PolicyChain | None
) -> None:
    """A chunk that leaves as it came is validated on its own frames (the output is not
    framed again); any other chunk is framed again. Either way the validator sees
    exactly the output's events."""
    if dialect is ANTHROPIC:
        bad = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,' + (
            b'"delta":{"type":"text_delta","text":"x"}}\n\n' + ANTHROPIC_STREAM
        )
    else:
        bad = OPENAI_STREAM.replace(b'"finish_reason":"stop"', b'"finish_reason":"tool_calls"')
    for stream in (stream_of(dialect), bad):
        events = _events(stream)
        body = sse_body(dialect, chain, validate=True)
        out, reframed, seen = await _validated(body, events)
        assert b"".join(seen) == out
        assert body.violations == len(validate_stream(dialect.path, {}, out))
        if chain is None:  # forwarded: only the last chunk (it ends the stream) again
            assert (body.violations > 0) is (stream is bad)
            assert reframed == [events[-1]]
        else:  # text held back or rewritten: what leaves changed is framed again
            assert reframed and all(piece in out for piece in reframed)


async def _validated(body: SseBody, events: list[bytes]) -> tuple[bytes, list[bytes], list[bytes]]:
    """The output of one event per chunk; what the validator framed again, and the raw
    bytes of the frames it checked."""
    assert body.validator is not None
    reframed: list[bytes] = []
    seen: list[bytes] = []
    framer_feed, validator_feed = body.validator.framer.feed, body.validator.validator.feed
    body.validator.framer.feed = lambda d: reframed.append(d) or framer_feed(d)  # type: ignore[method-assign]
    body.validator.validator.feed = lambda f: seen.append(f.raw) or validator_feed(f)  # type: ignore[method-assign]
    out = b""
    for n, event in enumerate(events):
        out += (await body.feed(event, n == len(events) - 1)).data
    return out, reframed, seen
