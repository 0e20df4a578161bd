"""A stream ended by the gateway's shutdown (`SseBody.end_now`): what the engine held
goes out, then the API's error event; a stream that already carried its terminator
gets nothing more (nothing may follow it)."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.pipeline.sse_body import SseBody
from extproc.policies.base import PolicyChain
from extproc.policies.noop import NoOpPolicy
from tests.helpers.dialects import openai_chunk, openai_sse
from tests.helpers.pipeline import ANTHROPIC_STREAM, Touching
from tests.helpers.streams import validate_stream

OPENAI_STREAM = openai_sse(
    [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Hello"}),
        openai_chunk({}, "stop"),
        "[DONE]",
    ]
)
CASES = [(ANTHROPIC, ANTHROPIC_STREAM), (OPENAI_CHAT, OPENAI_STREAM)]
CHAINS = [PolicyChain([NoOpPolicy()]), PolicyChain([Touching()])]


def _body(dialect: Dialect) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _sse(dialect: Dialect, chain: PolicyChain) -> SseBody:
    request = ApiRequest(dialect, dialect.path, "m", True, _body(dialect))
    return SseBody(dialect, request, chain, 1 << 20, 5.0, "POST /t", validate=True)


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize(("dialect", "stream"), CASES)
async def test_a_finished_stream_gets_nothing_after_its_terminator(
    dialect: Dialect, stream: bytes, chain: PolicyChain
) -> None:
    body = _sse(dialect, chain)
    sent = (await body.feed(stream, False)).data  # the end of stream comes later
    ended = await body.end_now("the gateway is shutting down", 1.0)
    assert ended.data == b"" and ended.end_of_stream
    assert validate_stream(dialect.path, _body(dialect), sent + ended.data) == []
    assert body.violations == 0


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize(("dialect", "stream"), CASES)
async def test_an_open_stream_ends_with_the_apis_error(
    dialect: Dialect, stream: bytes, chain: PolicyChain
) -> None:
    half = stream[: len(stream) // 2]
    half = half[: half.rfind(b"\n\n") + 2]  # whole events only
    body = _sse(dialect, chain)
    sent = (await body.feed(half, False)).data
    ended = await body.end_now("the gateway is shutting down", 1.0)
    assert ended.end_of_stream and b"shutting down" in ended.data
    assert validate_stream(dialect.path, _body(dialect), sent + ended.data) == []
