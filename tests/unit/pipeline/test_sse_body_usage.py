"""A chat stream whose usage report the gateway asked for (to count a caller's tokens,
`request.usage_added`): the client gets the stream it would have had without the ask,
while the body still reads the tokens from the report it drops."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.core.request import ApiRequest
from extproc.core.usage import Usage
from extproc.dialects.registry import OPENAI_CHAT
from extproc.pipeline.sse_body import SseBody
from extproc.policies.base import PolicyChain
from extproc.policies.noop import NoOpPolicy
from tests.helpers.dialects import USAGE, USAGE_CHUNK, openai_chunk, openai_sse
from tests.helpers.pipeline import Touching, split
from tests.helpers.streams import validate_stream

ASKED: list[Any] = [
    openai_chunk({"role": "assistant", "content": ""}),
    openai_chunk({"content": "Hel"}),
    openai_chunk({"content": "lo"}),
    openai_chunk({}, "stop"),
    USAGE_CHUNK,
    "[DONE]",
]
UPSTREAM = openai_sse(ASKED)
# What the client would have had without include_usage.
UNASKED = openai_sse(
    [
        {k: v for k, v in c.items() if k != "usage"} if isinstance(c, dict) else c
        for c in ASKED
        if c is not USAGE_CHUNK
    ]
)
# What USAGE_CHUNK reports.
REPORTED = Usage(input_tokens=82, output_tokens=51, cache_read_tokens=0, input_includes_cache=True)
CHAINS = [PolicyChain([NoOpPolicy()]), PolicyChain([Touching()])]
CUTS = [[], list(range(1, len(UPSTREAM))), [7, 150, 151, 600, len(UPSTREAM) - 20]]


def usage_asked_body(
    chain: PolicyChain, client_options: dict[str, Any] | None = None, validate: bool = True
) -> SseBody:
    """A streaming chat request the gateway made ask for usage, as admission does."""
    body: dict[str, Any] = {
        "model": "gpt-x",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if client_options is not None:
        body["stream_options"] = client_options
    request = ApiRequest(OPENAI_CHAT, OPENAI_CHAT.path, "gpt-x", True, body)
    request.usage_added = OPENAI_CHAT.ask_for_usage(request.body)
    return SseBody(OPENAI_CHAT, request, chain, 1 << 20, 5.0, "POST /t", validate)


async def feed_all(body: SseBody, chunks: list[bytes]) -> bytes:
    out = bytearray()
    for i, chunk in enumerate(chunks):
        res = await body.feed(chunk, i == len(chunks) - 1)
        out += res.data
        assert res.end_of_stream == (i == len(chunks) - 1)
    return bytes(out)


def test_the_expected_stream_is_the_upstream_without_usage() -> None:
    assert b'"usage"' not in UNASKED and b'"choices":[]' not in UNASKED
    assert UNASKED.endswith(b"data: [DONE]\n\n") and UNASKED.count(b"data: ") == 5
    assert (USAGE["prompt_tokens"], USAGE["completion_tokens"]) == (82, 51)


@pytest.mark.parametrize("cuts", CUTS, ids=["whole", "bytewise", "some"])
@pytest.mark.parametrize("chain", CHAINS, ids=["noop", "touching"])
async def test_the_client_gets_no_usage_while_the_tokens_are_read(
    chain: PolicyChain, cuts: list[int]
) -> None:
    body = usage_asked_body(chain)
    assert body.usage_added
    out = await feed_all(body, split(UPSTREAM, cuts))
    assert out == UNASKED
    assert body.usage == REPORTED
    # The stream is valid for a client that did not ask for usage.
    assert body.violations == 0
    assert validate_stream(OPENAI_CHAT.path, {"stream": True}, out) == []
    assert body.events_in == 5  # the dropped report is not an event the client got


async def test_a_client_that_asked_gets_the_report() -> None:
    options = {"include_usage": True}
    body = usage_asked_body(CHAINS[0], options)
    assert not body.usage_added
    assert await feed_all(body, [UPSTREAM]) == UPSTREAM
    assert body.usage == REPORTED and body.violations == 0


async def test_a_client_that_asked_for_other_options_keeps_them_and_gets_no_usage() -> None:
    body = usage_asked_body(CHAINS[1], {"include_obfuscation": True})
    assert body.usage_added
    assert await feed_all(body, split(UPSTREAM, [100, 400])) == UNASKED
    assert body.usage == REPORTED


async def test_a_stream_cut_before_the_report_has_no_tokens() -> None:
    cut = UPSTREAM.index(b"data: ", UPSTREAM.index(b'"finish_reason":"stop"'))  # the report
    body = usage_asked_body(CHAINS[0], validate=False)
    out = await feed_all(body, [UPSTREAM[:cut]])
    assert b'"usage"' not in out
    assert body.usage == Usage()
    assert body.events_in == 4
