"""The gRPC servicer with a real grpc.aio client playing Envoy's part."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from google.protobuf import json_format

from extproc.contract import FACTS_NAMESPACE, MAX_REPLY_CHUNK, SKIP_BODY_MODE
from extproc.gateway import Runtime
from extproc.policies.base import PolicyChain
from extproc.server import ExternalProcessor, start_server
from tests.helpers.pipeline import Touching
from tests.helpers.runtime import KEY, make_runtime

Served = tuple[ExternalProcessor, ep_grpc.ExternalProcessorStub]


def headers_msg(pairs: dict[str, str], eos: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
        ),
        end_of_stream=eos,
    )


REQ_HEADERS = ep.ProcessingRequest(
    request_headers=headers_msg(
        {
            ":method": "POST",
            ":path": "/v1/messages",
            "content-type": "application/json",
            "x-api-key": KEY,
        }
    )
)
REQ_BODY = ep.ProcessingRequest(
    request_body=ep.HttpBody(
        body=json.dumps({"model": "claude-x", "stream": True, "messages": []}).encode(),
        end_of_stream=True,
    )
)
RESP_HEADERS = ep.ProcessingRequest(
    response_headers=headers_msg({":status": "200", "content-type": "text/event-stream"})
)


def body_msg(data: bytes, eos: bool) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_body=ep.HttpBody(body=data, end_of_stream=eos))


@asynccontextmanager
async def serving(runtime: Runtime) -> AsyncIterator[Served]:
    srv, servicer, port = await start_server(runtime, address="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield servicer, ep_grpc.ExternalProcessorStub(channel)
    finally:
        await channel.close()
        await srv.stop(grace=None)


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    async with serving(make_runtime()) as served:
        yield served


async def test_replies_in_order_with_streamed_bodies(server: Served) -> None:
    _, stub = server
    event = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
    big = event * (3 * MAX_REPLY_CHUNK // len(event))
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    messages = [
        REQ_HEADERS,
        REQ_BODY,
        RESP_HEADERS,
        body_msg(big[:100], False),
        body_msg(big[100:] + stop, True),
    ]
    replies = [r async for r in stub.Process(iter(messages))]
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds[:3] == ["request_headers", "request_body", "response_headers"]
    assert set(kinds[3:]) == {"response_body"}
    bodies = [r.response_body.response.body_mutation for r in replies[3:]]
    assert all(b.WhichOneof("mutation") == "streamed_response" for b in bodies)
    assert all(len(b.streamed_response.body) <= MAX_REPLY_CHUNK for b in bodies)
    assert [b.streamed_response.end_of_stream for b in bodies][-1] is True
    assert not any(b.streamed_response.end_of_stream for b in bodies[:-1])
    assert b"".join(b.streamed_response.body for b in bodies) == big + stop
    body_reply = replies[1].request_body.response
    assert body_reply.clear_route_cache
    assert {h.header.key for h in body_reply.header_mutation.set_headers} == {
        "x-gateway-upstream",
        "anthropic-version",  # the test client sent none
    }
    removed = replies[0].request_headers.response.header_mutation.remove_headers
    assert {"x-api-key", "authorization"} <= set(removed)


async def test_bad_key_gets_immediate_response(server: Served) -> None:
    _, stub = server
    bad = ep.ProcessingRequest(
        request_headers=headers_msg({":method": "POST", ":path": "/v1/chat/completions"})
    )
    replies = [r async for r in stub.Process(iter([bad]))]
    assert len(replies) == 1
    imm = replies[0].immediate_response
    assert imm.status.code == 401
    assert json.loads(imm.body)["error"]["code"] == "invalid_api_key"
    assert any(h.header.key == "content-type" for h in imm.headers.set_headers)
    assert imm.details == "gateway_rejected_401"


async def test_refused_body_gets_immediate_response(server: Served) -> None:
    _, stub = server
    bad_body = ep.ProcessingRequest(request_body=ep.HttpBody(body=b"{", end_of_stream=True))
    replies = [r async for r in stub.Process(iter([REQ_HEADERS, bad_body]))]
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "immediate_response"]
    assert replies[1].immediate_response.status.code == 400


async def test_trailers_flush_and_answer(server: Served) -> None:
    _, stub = server
    partial = b"event: message_stop\ndata: {}"  # no blank line yet
    messages = [
        REQ_HEADERS,
        REQ_BODY,
        RESP_HEADERS,
        body_msg(partial, False),
        ep.ProcessingRequest(response_trailers=ep.HttpTrailers()),
    ]
    replies = [r async for r in stub.Process(iter(messages))]
    assert replies[-1].WhichOneof("response") == "response_trailers"
    body = replies[-2].response_body.response.body_mutation.streamed_response
    assert body.body == partial


async def test_cancelled_stream_releases_request(server: Served) -> None:
    servicer, stub = server
    queue: asyncio.Queue[ep.ProcessingRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        while (item := await queue.get()) is not None:
            yield item

    for msg in (
        REQ_HEADERS,
        REQ_BODY,
        RESP_HEADERS,
        body_msg(b"event: ping\ndata: {}\n\nda", False),
    ):
        queue.put_nowait(msg)
    call = stub.Process(requests())
    got = 0
    async for _ in call:
        got += 1
        if got == 4:  # headers, body, response headers, the ping event
            break
    assert servicer.active == 1
    call.cancel()
    async with asyncio.timeout(5):
        while servicer.active:  # noqa: ASYNC110 - a counter, polled under a deadline
            await asyncio.sleep(0.01)
    assert servicer.active == 0


async def test_envoy_without_response_bodies_and_a_chain_that_reads_them() -> None:
    """Envoy says in its first message whether it streams response bodies: a chain that
    needs them is refused in format rather than skipped."""
    none = ep.ProtocolConfiguration(response_body_mode=pm.ProcessingMode.NONE)
    first = ep.ProcessingRequest()
    first.CopyFrom(REQ_HEADERS)
    first.protocol_config.CopyFrom(none)
    async with serving(make_runtime(PolicyChain([Touching()]))) as (_, stub):
        replies = [r async for r in stub.Process(iter([first]))]
        assert replies[0].immediate_response.status.code == 503
        # Envoy streaming bodies: the same chain is served.
        streamed = ep.ProtocolConfiguration(
            response_body_mode=pm.ProcessingMode.FULL_DUPLEX_STREAMED
        )
        first.protocol_config.CopyFrom(streamed)
        replies = [r async for r in stub.Process(iter([first]))]
        assert replies[0].WhichOneof("response") == "request_headers"


async def test_plain_text_error_without_a_body_coming_is_answered_at_the_headers() -> None:
    none = ep.ProtocolConfiguration(response_body_mode=pm.ProcessingMode.NONE)
    first = ep.ProcessingRequest()
    first.CopyFrom(REQ_HEADERS)
    first.protocol_config.CopyFrom(none)
    error = ep.ProcessingRequest(
        response_headers=headers_msg({":status": "503", "content-type": "text/plain"})
    )
    async with serving(make_runtime()) as (_, stub):
        replies = [r async for r in stub.Process(iter([first, REQ_BODY, error]))]
    assert [r.WhichOneof("response") for r in replies] == [
        "request_headers",
        "request_body",
        "immediate_response",
    ]
    imm = replies[-1].immediate_response
    assert imm.status.code == 503
    assert json.loads(imm.body)["error"]["type"] == "api_error"


def test_a_worker_socket_is_claimed_only_from_a_dead_worker(tmp_path: Path) -> None:
    import socket

    from extproc.server import _claim_socket

    path = str(tmp_path / "w.sock")
    _claim_socket(path)  # nothing there: nothing to do
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen()
    with pytest.raises(OSError, match="another process listens there"):
        _claim_socket(path)
    live.close()  # a worker that died leaves its socket file behind
    _claim_socket(path)
    assert not Path(path).exists()
    Path(path).write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        _claim_socket(path)
    assert Path(path).read_text() == "not a socket"


def fast_first(facts: dict[str, object] | None) -> ep.ProcessingRequest:
    """The first message behind an Envoy that sends no responses to ext_proc, with what
    its request facts filter read."""
    first = ep.ProcessingRequest()
    first.CopyFrom(REQ_HEADERS)
    first.protocol_config.CopyFrom(
        ep.ProtocolConfiguration(
            request_body_mode=pm.ProcessingMode.BUFFERED, response_body_mode=pm.ProcessingMode.NONE
        )
    )
    if facts is not None:
        fields = first.metadata_context.filter_metadata[FACTS_NAMESPACE]
        fields.update(facts)
    return first


async def test_a_request_routed_from_envoys_facts_takes_one_message() -> None:
    async with serving(make_runtime()) as (servicer, stub):
        first = fast_first({"model": "claude-x", "stream": True})
        replies = [r async for r in stub.Process(iter([first]))]
    (reply,) = replies
    # Envoy keeps the body: the config's own mode minus the request body.
    assert reply.mode_override == json_format.ParseDict(SKIP_BODY_MODE, pm.ProcessingMode())
    common = reply.request_headers.response
    assert common.clear_route_cache
    assert "x-gateway-upstream" in {h.header.key for h in common.header_mutation.set_headers}
    assert servicer.active == 0


@pytest.mark.parametrize(
    "facts", [None, {"unreadable": True}, {"model": 5}, {"model": "claude-x", "stream": "yes"}]
)
async def test_without_usable_facts_the_body_is_read(facts: dict[str, object] | None) -> None:
    async with serving(make_runtime()) as (_, stub):
        replies = [r async for r in stub.Process(iter([fast_first(facts), REQ_BODY]))]
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "request_body"]
    assert not replies[0].HasField("mode_override")
    assert replies[1].request_body.response.clear_route_cache
