"""A stream held while a gate decides a tool call (a person answers, minutes long):
`SseBody.keepalive` gives out what is final already (the events before the call), then
the API's keepalive; once the gate decides, the rest follows, and all of it together is
a valid stream of its API."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from extproc.core.decisions import BlockToolCall, ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.anthropic.dialect import PING_EVENT
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.pipeline.bodies import BodyOut
from extproc.pipeline.sse_body import SseBody
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.noop import NoOpPolicy
from tests.helpers.dialects import (
    anthropic_sse,
    anthropic_stream,
    call_delta,
    openai_chunk,
    openai_sse,
)
from tests.helpers.pipeline import Touching, Upper
from tests.helpers.responses_streams import Call, Text, render_stream
from tests.helpers.streams import validate_stream

COMMENT_KEEPALIVE = b": keepalive\n\n"


class Held(Policy[PolicyConfig]):
    """A gate that decides each tool call only once released (as a person would), then
    lets it through or blocks it."""

    type = "held"
    gates_tool_calls = True

    def __init__(self, block: bool = False, mode: Literal["enforce", "shadow"] = "enforce") -> None:
        super().__init__(PolicyConfig(type="held", mode=mode))
        self.block = block
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[str] = []

    def holds_for(self) -> float:
        return 300.0  # as a person's answer may take

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall | None:
        self.calls.append(call.name)
        self.asked.set()
        await self.release.wait()
        return BlockToolCall(f"{call.name} was denied by alice.") if self.block else None


def openai_text_then_call() -> bytes:
    return openai_sse(
        [
            openai_chunk({"role": "assistant", "content": ""}),
            openai_chunk({"content": "Let me check "}),
            openai_chunk({"content": "the weather."}),
            openai_chunk(call_delta(0, "", "get_weather")),
            openai_chunk(call_delta(0, '{"location": ')),
            openai_chunk(call_delta(0, '"Paris"}')),
            openai_chunk({}, "tool_calls"),
            "[DONE]",
        ]
    )


# (dialect, the upstream stream: text, then a tool call; where the call begins)
STREAMS: dict[str, tuple[Dialect, bytes, bytes]] = {
    "anthropic": (
        ANTHROPIC,
        anthropic_sse(anthropic_stream(("text", "tool_use"))),
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1',
    ),
    "openai_chat": (OPENAI_CHAT, openai_text_then_call(), b'data: {"id"'),
    "openai_responses": (
        OPENAI_RESPONSES,
        render_stream([Text(["Let me ", "check."]), Call("get_weather", ['{"city":', '"Paris"}'])]),
        b"event: response.output_item.added",
    ),
}
KEEPALIVES = {"anthropic": PING_EVENT, "openai_chat": COMMENT_KEEPALIVE}
KEEPALIVES["openai_responses"] = COMMENT_KEEPALIVE


def call_starts(name: str) -> int:
    """Where the tool call's first event begins in the upstream stream."""
    _, raw, marker = STREAMS[name]
    if name == "openai_chat":
        return raw.index(b'"tool_calls"')  # inside the call's first chunk
    if name == "openai_responses":
        return raw.index(marker, raw.index(b"response.output_item.done"))
    return raw.index(marker)


def event_start(raw: bytes, inside: int) -> int:
    """The start of the event that `inside` falls in."""
    return raw.rindex(b"\n\n", 0, inside) + 2


def sse_body(dialect: Dialect, chain: PolicyChain, timeout: float = 10.0) -> SseBody:
    request = ApiRequest(
        dialect=dialect,
        path=dialect.path,
        model="m-1",
        stream=True,
        body={"model": "m-1", "input": "hi", "messages": []},
    )
    return SseBody(dialect, request, chain, 1 << 20, timeout, "POST /t", validate=True)


def valid(dialect: Dialect, raw: bytes) -> list[str]:
    return validate_stream(dialect.path, {"model": "m-1", "input": "hi"}, raw)


async def held_then(body: SseBody, gate: Held, chunk: bytes, eos: bool) -> asyncio.Task[BodyOut]:
    """`feed` running, held by the gate: it has been asked about the call."""
    feeding = asyncio.ensure_future(body.feed(chunk, eos))
    async with asyncio.timeout(5):
        await gate.asked.wait()
    assert not feeding.done()
    return feeding


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_what_is_final_goes_out_then_keepalives_then_the_rest(name: str) -> None:
    dialect, raw, _ = STREAMS[name]
    gate = Held()
    body = sse_body(dialect, PolicyChain([gate]))
    assert body.may_hold
    feeding = await held_then(body, gate, raw, True)
    before = event_start(raw, call_starts(name))
    ready = body.keepalive(False)
    assert ready == BodyOut(raw[:before], False)  # the events before the call, untouched
    assert b"Let me" in ready.data
    # Nothing new is final while the gate holds: only the keepalive.
    pings = [body.keepalive(True) for _ in range(3)]
    assert all(p == BodyOut(KEEPALIVES[name], False) for p in pings)
    assert body.keepalive(False) == BodyOut(b"", False)
    gate.release.set()
    rest = await asyncio.wait_for(feeding, 5)
    assert rest.end_of_stream and rest.data == raw[before:]
    got = ready.data + b"".join(p.data for p in pings) + rest.data
    assert valid(dialect, got) == []
    assert body.violations == 0 and gate.calls == ["get_weather"]


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_a_blocked_call_after_keepalives_is_still_a_valid_stream(name: str) -> None:
    dialect, raw, _ = STREAMS[name]
    gate = Held(block=True)
    body = sse_body(dialect, PolicyChain([gate]))
    feeding = await held_then(body, gate, raw, True)
    sent = body.keepalive(False).data + body.keepalive(True).data
    gate.release.set()
    rest = await asyncio.wait_for(feeding, 5)
    got = sent + rest.data
    assert rest.end_of_stream and b"get_weather was denied by alice." in got
    assert b"Paris" not in got
    assert valid(dialect, got) == [] and body.violations == 0


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_the_call_held_in_a_later_chunk(name: str) -> None:
    """Chunks before the held one went out whole; the held chunk's own earlier events
    are what keepalive gives."""
    dialect, raw, _ = STREAMS[name]
    start = event_start(raw, call_starts(name))
    cut = raw.index(b"\n\n") + 2  # the first event alone
    gate = Held()
    body = sse_body(dialect, PolicyChain([gate]))
    first = await body.feed(raw[:cut], False)
    assert first == BodyOut(raw[:cut], False)
    assert body.keepalive(False) == BodyOut(b"", False)  # nothing is held yet
    feeding = await held_then(body, gate, raw[cut:], True)
    ready = body.keepalive(False)
    assert ready.data == raw[cut:start]
    gate.release.set()
    rest = await asyncio.wait_for(feeding, 5)
    assert first.data + ready.data + rest.data == raw
    assert body.violations == 0


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_a_gate_held_past_the_time_limit_fails_after_what_went_out(name: str) -> None:
    dialect, raw, _ = STREAMS[name]
    gate = Held()
    body = sse_body(dialect, PolicyChain([gate]), timeout=0.3)
    feeding = await held_then(body, gate, raw, True)
    ready = body.keepalive(False)
    ping = body.keepalive(True)
    failed = await asyncio.wait_for(feeding, 5)
    assert failed.end_of_stream
    # What keepalive gave is not given twice: the error follows at once.
    assert b"a gateway policy did not finish in time" in failed.data
    if dialect is not OPENAI_RESPONSES:  # its error event carries a sequence number
        assert failed.data == dialect.stream_error("a gateway policy did not finish in time")
    got = ready.data + ping.data + failed.data
    first_event = raw[: raw.index(b"\n\n") + 2]
    assert ready.data.startswith(first_event) and got.count(first_event) == 1
    assert valid(dialect, got) == [] and body.violations == 0
    # The stream is over: no keepalive after the gateway's own end.
    assert body.keepalive(True) == BodyOut(b"", False)


async def test_failing_without_a_keepalive_still_sends_what_was_final() -> None:
    dialect, raw, _ = STREAMS["anthropic"]
    gate = Held()
    body = sse_body(dialect, PolicyChain([gate]), timeout=0.2)
    feeding = await held_then(body, gate, raw, True)
    failed = await asyncio.wait_for(feeding, 5)
    start = event_start(raw, call_starts("anthropic"))
    error = dialect.stream_error("a gateway policy did not finish in time")
    assert failed == BodyOut(raw[:start] + error, True)


@pytest.mark.parametrize(
    ("policies", "holds"),
    [
        ([NoOpPolicy()], False),
        ([Upper()], False),  # rewrites text, decides no call
        ([Held()], True),
        ([Touching()], False),  # decides calls, but never for long: no keepalives
        ([NoOpPolicy(), Held()], True),
    ],
)
def test_only_a_chain_with_a_gate_may_hold(policies: list[Policy[Any]], holds: bool) -> None:
    assert sse_body(ANTHROPIC, PolicyChain(policies)).may_hold is holds


def test_a_shadow_gate_never_holds() -> None:
    shadow = Held(mode="shadow")
    assert not sse_body(ANTHROPIC, PolicyChain([shadow])).may_hold
