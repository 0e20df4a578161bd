"""Shadow tool-call policies watch, never hold (extproc/engine/tools.py `watch_calls`, and
each dialect's engines): every API's stream and body leaves byte for byte as it came,
whatever shape the provider used, and the calls still reach the shadow policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from extproc.core.audit import Action, Decision, DecisionLog, Mode
from extproc.core.decisions import BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.engine import tools
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.pii_redaction import PiiRedactionConfig, PiiRedactionPolicy
from tests.helpers.dialects import (
    anthropic_body,
    anthropic_sse,
    anthropic_stream,
    api_request,
    call_delta,
    openai_body,
    openai_chunk,
    openai_sse,
)
from tests.helpers.responses_streams import Call, Refusal, Text, render_stream, response_object
from tests.helpers.streams import frames


class BlockAll(Policy[PolicyConfig]):
    """Would block every call: in shadow mode, only says so."""

    type = "block_all"
    gates_tool_calls = True

    def __init__(self) -> None:
        super().__init__(PolicyConfig(type="block_all", mode="shadow"))

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall:
        return BlockToolCall(f"would block {call.name}")


def watched_request(dialect: Dialect, body: dict[str, Any]) -> tuple[ApiRequest, list[Decision]]:
    seen: list[Decision] = []
    request = api_request(body, dialect)
    request.decisions = DecisionLog(seen.append)
    return request, seen


async def shown(seen: list[Decision], count: int) -> list[str]:
    """The tools the shadow policy was shown, once its background decisions ended."""
    await asyncio.gather(*tools._WATCHING)
    assert len(seen) == count
    assert {(d.action, d.mode) for d in seen} == {(Action.BLOCK_TOOL_CALL, Mode.SHADOW)}
    return [str(d.target["tool"]) for d in seen]


async def stream_through(dialect: Dialect, request: ApiRequest, raw: bytes) -> bytes:
    engine = dialect.stream_engine(PolicyChain([BlockAll()]), request)
    out = b""
    for frame in frames(raw):
        out += await engine.feed([frame])
    out += await engine.flush()
    engine.close()  # the response is over: shadow decisions go on regardless
    return out


async def test_anthropic_text_after_a_tool_call_keeps_its_place() -> None:
    raw = anthropic_sse(anthropic_stream(("text", "tool_use", "text")))
    request, seen = watched_request(ANTHROPIC, anthropic_body())
    assert await stream_through(ANTHROPIC, request, raw) == raw
    assert len(await shown(seen, 1)) == 1


OPENAI_SHAPES = {
    # vLLM and Ollama: the whole call in the chunk that finishes the choice.
    "call_with_finish": [
        openai_chunk({"role": "assistant"}),
        openai_chunk(call_delta(0, '{"command": "ls"}', "bash"), "tool_calls"),
    ],
    # Extra fields beside the call (reasoning models behind compatible servers).
    "extra_fields": [
        openai_chunk({"role": "assistant", "reasoning_content": "hmm"}),
        openai_chunk({**call_delta(0, '{"comm', "bash"), "reasoning_content": ""}),
        openai_chunk(call_delta(0, 'and": "ls"}')),
        openai_chunk({}, "tool_calls"),
    ],
    # Content after the call.
    "content_after": [
        openai_chunk({"role": "assistant", **call_delta(0, "{}", "bash")}),
        openai_chunk({"content": "done"}),
        openai_chunk({}, "tool_calls"),
    ],
}


@pytest.mark.parametrize("shape", sorted(OPENAI_SHAPES))
async def test_openai_stream_shapes_pass_untouched(shape: str) -> None:
    raw = openai_sse([*OPENAI_SHAPES[shape], "[DONE]"])
    request, seen = watched_request(OPENAI_CHAT, openai_body())
    assert await stream_through(OPENAI_CHAT, request, raw) == raw
    assert await shown(seen, 1) == ["bash"]


async def test_responses_stream_passes_untouched() -> None:
    raw = render_stream([Text(["Hi"]), Call("get_weather", ['{"city":', '"Paris"}'])])
    request, seen = watched_request(OPENAI_RESPONSES, {"model": "gpt-x", "input": "hi"})
    assert await stream_through(OPENAI_RESPONSES, request, raw) == raw
    assert await shown(seen, 1) == ["get_weather"]


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        (
            ANTHROPIC,
            {
                "type": "message",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "bash", "input": {}},
                    {"type": "text", "text": "after"},
                ],
                "stop_reason": "tool_use",
            },
        ),
        (
            OPENAI_CHAT,
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", **call_delta(0, "{}", "bash")},
                        "finish_reason": "tool_calls",
                    }
                ]
            },
        ),
        (OPENAI_RESPONSES, response_object([Call("bash", ['{"command": "ls"}'])])),
    ],
    ids=["anthropic", "openai", "responses"],
)
async def test_whole_bodies_are_left_as_they_are(dialect: Dialect, body: dict[str, Any]) -> None:
    request, seen = watched_request(dialect, {"model": "m"})
    out = await dialect.process_message(body, PolicyChain([BlockAll()]), request)
    assert out is body  # the very object: its original bytes go out
    assert await shown(seen, 1) == ["bash"]


async def test_a_shadow_rewriter_leaves_an_unrewritable_message_as_it_came() -> None:
    """A refusal's text is not rewritten: its item and the terminal event keep their
    own bytes, spaced JSON included (re-encoding would compact it)."""
    raw = render_stream([Refusal(["I can't help with that."])]).replace(b'":"', b'": "')
    request, _ = watched_request(OPENAI_RESPONSES, {"model": "gpt-x", "input": "hi"})
    chain = PolicyChain([PiiRedactionPolicy(PiiRedactionConfig(mode="shadow"))])
    engine = OPENAI_RESPONSES.stream_engine(chain, request)
    out = b""
    for frame in frames(raw):
        out += await engine.feed([frame])
    out += await engine.flush()
    assert out == raw


async def test_a_watched_body_with_junk_tool_calls_is_left_alone() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [None, 3]}}]}
    request, _ = watched_request(OPENAI_CHAT, {"model": "m"})
    assert await OPENAI_CHAT.process_message(body, PolicyChain([BlockAll()]), request) is body
