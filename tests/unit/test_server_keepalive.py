"""The gRPC servicer while a gate holds a response chunk (a person decides a tool call):
what is final goes out at once, keepalives follow every KEEPALIVE_INTERVAL_S, and the
request going away cancels the policy's wait. `Process` is driven directly with Envoy's
messages, as a queue the test feeds; one test goes through a real grpc.aio client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.anthropic.dialect import PING_EVENT
from extproc.live import LiveRuntime
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.server import ExternalProcessor, start_server
from tests.helpers.dialects import anthropic_sse, anthropic_stream
from tests.helpers.pipeline import Waits
from tests.helpers.runtime import KEY, make_runtime
from tests.helpers.streams import validate_stream

KEEPALIVE_S = 0.05
STREAM = anthropic_sse(anthropic_stream(("text", "tool_use")))
# Where the tool call's events begin: everything before is final while the gate holds.
CALL_AT = STREAM.index(b'event: content_block_start\ndata: {"type":"content_block_start","index":1')


class Held(Policy[PolicyConfig]):
    """Decides each tool call (lets it through) once released."""

    type = "held"
    gates_tool_calls = True

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def holds_for(self) -> float:
        return 300.0  # as a person's answer may take

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        self.asked.set()
        await self.release.wait()


class LongWaits(Waits):
    """A gate that waits for ever, as long as a person may take."""

    def holds_for(self) -> float:
        return 300.0


def headers_msg(pairs: dict[str, str], eos: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
        ),
        end_of_stream=eos,
    )


def opening() -> list[ep.ProcessingRequest]:
    """A streaming Anthropic request, sent upstream, and its 200 SSE response headers."""
    request = {":method": "POST", ":path": "/v1/messages", "content-type": "application/json"}
    body = {"model": "claude-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = {":status": "200", "content-type": "text/event-stream"}
    return [
        ep.ProcessingRequest(request_headers=headers_msg({**request, "x-api-key": KEY})),
        ep.ProcessingRequest(
            request_body=ep.HttpBody(body=json.dumps(body).encode(), end_of_stream=True)
        ),
        ep.ProcessingRequest(response_headers=headers_msg(response)),
    ]


def body_msg(data: bytes, eos: bool) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_body=ep.HttpBody(body=data, end_of_stream=eos))


def streamed(reply: ep.ProcessingResponse) -> tuple[bytes, bool]:
    part = reply.response_body.response.body_mutation.streamed_response
    return part.body, part.end_of_stream


class Envoy:
    """Plays Envoy against `servicer.Process`: messages go in through a queue, replies
    are collected as they come."""

    def __init__(self, servicer: ExternalProcessor) -> None:
        self.queue: asyncio.Queue[ep.ProcessingRequest | None] = asyncio.Queue()
        self.replies: list[ep.ProcessingResponse] = []
        self.arrived = asyncio.Condition()
        self.task = asyncio.ensure_future(self._run(servicer))

    async def _messages(self) -> AsyncIterator[ep.ProcessingRequest]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def _run(self, servicer: ExternalProcessor) -> None:
        context: Any = None  # Process never uses its context
        async for reply in servicer.Process(self._messages(), context):
            async with self.arrived:
                self.replies.append(reply)
                self.arrived.notify_all()

    def send(self, *messages: ep.ProcessingRequest | None) -> None:
        for message in messages:
            self.queue.put_nowait(message)

    async def until(self, count: int, within: float = 5.0) -> list[ep.ProcessingResponse]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.replies) >= count)
        return self.replies


def processor(chain: PolicyChain) -> ExternalProcessor:
    runtime = make_runtime(chain, keepalive_interval_s=KEEPALIVE_S)
    return ExternalProcessor(LiveRuntime.fixed(runtime))


async def test_keepalives_go_out_while_the_gate_holds() -> None:
    gate = Held()
    servicer = processor(PolicyChain([gate]))
    assert servicer.keepalive_s == KEEPALIVE_S
    envoy = Envoy(servicer)
    envoy.send(*opening(), body_msg(STREAM, True))
    async with asyncio.timeout(5):
        await gate.asked.wait()
    # Headers, request body, response headers; then what is final; then pings.
    replies = await envoy.until(3 + 1 + 3)
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds[:3] == ["request_headers", "request_body", "response_headers"]
    ready, *pings = [streamed(r) for r in replies[3:]]
    assert ready == (STREAM[:CALL_AT], False)
    assert pings and all(p == (PING_EVENT, False) for p in pings)
    assert not gate.release.is_set() and servicer.active == 1
    gate.release.set()
    envoy.send(None)
    await asyncio.wait_for(envoy.task, 5)
    bodies = [streamed(r) for r in envoy.replies[3:]]
    assert bodies[-1][1] is True and not any(eos for _, eos in bodies[:-1])
    assert bodies[-1][0] == STREAM[CALL_AT:]
    got = b"".join(data for data, _ in bodies)
    assert got.replace(PING_EVENT, b"") == STREAM
    assert validate_stream("/v1/messages", {}, got) == []
    assert servicer.active == 0


async def test_a_chunk_decided_at_once_gets_no_keepalive() -> None:
    gate = Held()
    gate.release.set()
    servicer = processor(PolicyChain([gate]))
    envoy = Envoy(servicer)
    envoy.send(*opening(), body_msg(STREAM, True), None)
    await asyncio.wait_for(envoy.task, 5)
    assert [streamed(r) for r in envoy.replies[3:]] == [(STREAM, True)]


async def test_cancelling_process_cancels_the_policys_wait() -> None:
    waits = LongWaits()
    servicer = processor(PolicyChain([waits]))
    envoy = Envoy(servicer)
    envoy.send(*opening(), body_msg(STREAM, True))
    async with asyncio.timeout(5):
        await waits.started.wait()
    await envoy.until(4)  # the text before the call went out
    assert servicer.active == 1
    envoy.task.cancel()  # Envoy (the client) went away
    async with asyncio.timeout(5):
        await waits.cancelled.wait()
    await asyncio.wait({envoy.task}, timeout=5)  # the held work unwinds first
    assert envoy.task.cancelled()
    assert servicer.active == 0


async def test_a_real_grpc_cancel_cancels_the_policys_wait() -> None:
    waits = LongWaits()
    runtime = make_runtime(PolicyChain([waits]), keepalive_interval_s=KEEPALIVE_S)
    server, servicer, port = await start_server(runtime, address="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        queue: asyncio.Queue[ep.ProcessingRequest | None] = asyncio.Queue()

        async def messages() -> AsyncIterator[ep.ProcessingRequest]:
            while (item := await queue.get()) is not None:
                yield item

        for message in (*opening(), body_msg(STREAM, True)):
            queue.put_nowait(message)
        call = ep_grpc.ExternalProcessorStub(channel).Process(messages())
        got: list[bytes] = []
        async with asyncio.timeout(5):
            async for reply in call:
                if reply.HasField("response_body"):
                    got.append(streamed(reply)[0])
                if len(got) >= 2:  # what was final, then a keepalive
                    break
        assert got[0] == STREAM[:CALL_AT] and got[1] == PING_EVENT
        assert waits.started.is_set() and not waits.cancelled.is_set()
        call.cancel()
        async with asyncio.timeout(5):
            await waits.cancelled.wait()
            while servicer.active:  # noqa: ASYNC110 - a counter, polled under a deadline
                await asyncio.sleep(0.01)
    finally:
        await channel.close()
        await server.stop(grace=None)


async def test_a_held_stream_ends_in_format_when_the_process_stops() -> None:
    gate = Held()
    servicer = processor(PolicyChain([gate]))
    envoy = Envoy(servicer)
    envoy.send(*opening(), body_msg(STREAM, True))
    async with asyncio.timeout(5):
        await gate.asked.wait()
    await envoy.until(4)  # the text before the call went out
    stopping = asyncio.ensure_future(servicer.shut_down(5.0))
    # The call is never released: the stream ends at once, with the API's error event.
    async with asyncio.timeout(3):
        await envoy.arrived.acquire()
        try:
            await envoy.arrived.wait_for(lambda: streamed(envoy.replies[-1])[1])
        finally:
            envoy.arrived.release()
    envoy.send(None)
    await asyncio.wait_for(envoy.task, 5)
    await asyncio.wait_for(stopping, 5)
    got = b"".join(streamed(r)[0] for r in envoy.replies[3:]).replace(PING_EVENT, b"")
    assert got.startswith(STREAM[:CALL_AT])
    assert b"the gateway is shutting down" in got and b'"tool_use"' not in got[CALL_AT:]
    assert validate_stream("/v1/messages", {}, got) == []
    assert not gate.release.is_set() and servicer.active == 0


class Prompt(Held):
    """Decides a moment after it is asked (a gate's tasks), long before any keepalive."""

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        self.asked.set()
        await asyncio.sleep(0.01)


async def test_a_chunk_decided_at_once_goes_out_whole_while_the_process_drains() -> None:
    servicer = processor(PolicyChain([Prompt()]))
    envoy = Envoy(servicer)
    envoy.send(*opening())
    await envoy.until(3)
    stopping = asyncio.ensure_future(servicer.shut_down(5.0))
    envoy.send(body_msg(STREAM, True), None)
    await asyncio.wait_for(envoy.task, 5)
    await asyncio.wait_for(stopping, 5)
    got = b"".join(streamed(r)[0] for r in envoy.replies[3:])
    assert got == STREAM and streamed(envoy.replies[-1])[1]
