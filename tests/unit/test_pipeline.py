"""The per-request pipeline without gRPC or Envoy: phases, limits, failures, fidelity."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from extproc.apis.kind import ApiKind
from extproc.config import Settings
from extproc.keys import KeyRegistry
from extproc.pipeline import Continue, Reject, RequestPipeline, ResponseMode
from extproc.policies.base import ApiRequest, BlockToolCall, Policy, PolicyChain, Span, ToolCall
from extproc.policies.noop import NoOpPolicy
from extproc.routing import Router

KEY = "sk-test-key"
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"h\xc3\xa9llo \xf0\x9f\x8c\x8d"}}\n\n'
    b": keep-alive comment\n\n"
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":5}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OPENAI_STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"content":"1, 2"},"finish_reason":null}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)


def make(chain: PolicyChain | None = None, **overrides: object) -> RequestPipeline:
    cfg = Settings(gateway_keys=(SecretStr(KEY),), **overrides)  # type: ignore[arg-type]
    return RequestPipeline(
        cfg,
        KeyRegistry.build(cfg.env_keys, None),
        chain or PolicyChain([NoOpPolicy()]),
        Router.build(cfg, env={}),
    )


def request_headers(path: str = "/v1/messages", **extra: str) -> dict[str, str]:
    return {
        ":method": "POST",
        ":path": path,
        "content-type": "application/json",
        "x-api-key": KEY,
        **extra,
    }


async def started(
    api: ApiKind = ApiKind.ANTHROPIC,
    chain: PolicyChain | None = None,
    ctype: str = "text/event-stream",
    **overrides: object,
) -> RequestPipeline:
    path = "/v1/messages" if api is ApiKind.ANTHROPIC else "/v1/chat/completions"
    p = make(chain, **overrides)
    assert isinstance(p.on_request_headers(request_headers(path), False), Continue)
    body = {
        "model": "claude-x" if api is ApiKind.ANTHROPIC else "gpt-x",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert isinstance(await p.on_request_body(json.dumps(body).encode()), Continue)
    p.on_response_headers({":status": "200", "content-type": ctype}, False)
    return p


async def run_chunks(p: RequestPipeline, chunks: list[bytes]) -> bytes:
    out = bytearray()
    for i, chunk in enumerate(chunks):
        res = await p.on_response_body(chunk, i == len(chunks) - 1)
        out += res.data
        assert res.end_of_stream == (i == len(chunks) - 1)
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a] or [b""]


class Touching(Policy):
    """Looks at every event, every text and every tool call, and lets all through:
    the engine runs, and its output must still be byte-identical."""

    type = "touching"
    observes_events = True
    gates_tool_calls = True
    rewrites_text = True

    def observe(self, event_type: str, payload: object, request: ApiRequest) -> None:
        pass

    def rewriter(self, request: ApiRequest) -> Touching:
        return self

    holdback = 5

    def spans(self, text: str, start: int) -> list[Span]:
        return []


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(), api=st.sampled_from([ApiKind.ANTHROPIC, ApiKind.OPENAI]), touching=st.booleans()
)
def test_noop_output_is_byte_identical_for_any_chunking(
    data: st.DataObject, api: ApiKind, touching: bool
) -> None:
    stream = ANTHROPIC_STREAM if api is ApiKind.ANTHROPIC else OPENAI_STREAM
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=40))
    chain = PolicyChain([Touching()]) if touching else None

    async def go() -> bytes:
        return await run_chunks(await started(api, chain), split(stream, cuts))

    assert asyncio.run(go()) == stream


async def test_request_headers_checks() -> None:
    assert isinstance(make().on_request_headers(request_headers(), False), Continue)
    out = make().on_request_headers(request_headers(**{"x-api-key": "bad"}), False)
    assert isinstance(out, Reject) and out.status == 401
    body = json.loads(out.body)
    assert body["error"]["type"] == "authentication_error" and "bad" not in out.body.decode()
    out = make().on_request_headers(
        request_headers("/v1/chat/completions", **{"x-api-key": ""}), False
    )
    assert isinstance(out, Reject) and json.loads(out.body)["error"]["code"] == "invalid_api_key"
    out = make().on_request_headers(request_headers(**{"content-length": str(10**9)}), False)
    assert isinstance(out, Reject) and out.status == 413
    out = make().on_request_headers(request_headers(), True)
    assert isinstance(out, Reject) and out.status == 400


async def test_gateway_key_removed_and_routing_header_set() -> None:
    p = make(openai_api_key=SecretStr("sk-o"), anthropic_api_key=SecretStr("sk-a"))
    out = p.on_request_headers(request_headers("/v1/chat/completions"), False)
    assert isinstance(out, Continue)
    assert {"authorization", "x-api-key", "x-gateway-upstream"} <= set(out.remove_headers)
    for model, upstream in (("claude-sonnet-5-5", "anthropic"), ("gpt-4o", "openai")):
        body = {"model": model, "messages": []}
        res = await p.on_request_body(json.dumps(body).encode())
        assert isinstance(res, Continue) and res.clear_route_cache
        assert res.set_headers["x-gateway-upstream"] == upstream
        assert res.body is None  # unchanged request: Envoy forwards the original bytes


async def test_provider_key_injected_only_for_real_upstream() -> None:
    p = make(openai_api_key=SecretStr("sk-provider"))
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    res = await p.on_request_body(b'{"model":"gpt-4o","messages":[]}')
    assert isinstance(res, Continue) and res.set_headers["authorization"] == "Bearer sk-provider"
    assert res.set_headers["x-gateway-upstream"] == "openai"
    # No Anthropic key: the mock's own cluster, and nothing injected.
    res = await p.on_request_body(b'{"model":"claude-x","messages":[]}')
    assert isinstance(res, Continue) and "authorization" not in res.set_headers
    assert res.set_headers["x-gateway-upstream"] == "mock"


async def test_stream_without_terminator_gets_error_event() -> None:
    p = await started()
    cut = ANTHROPIC_STREAM.index(b"event: content_block_stop")
    out = await run_chunks(p, [ANTHROPIC_STREAM[:cut]])
    assert out.startswith(ANTHROPIC_STREAM[:cut])
    assert out[cut:].startswith(b"event: error\ndata: ")
    p = await started(ApiKind.OPENAI)
    out = await run_chunks(p, [OPENAI_STREAM[:40]])
    assert out.endswith(b"data: [DONE]\n\n") and b'"error"' in out


async def test_last_frame_without_blank_line_is_delivered() -> None:
    p = await started()
    out = await run_chunks(p, [ANTHROPIC_STREAM[:-2]])
    assert out == ANTHROPIC_STREAM[:-2]


async def test_frame_too_large_fails_in_format_and_ends() -> None:
    p = await started(max_sse_frame_bytes=100)
    res = await p.on_response_body(b"event: content_block_delta\ndata: " + b"x" * 200, False)
    assert res.end_of_stream and res.data.startswith(b"event: error\n")
    assert b"larger than 100 bytes" in res.data
    later = await p.on_response_body(b"more\n\n", True)
    assert later.data == b"" and not later.end_of_stream


OPENAI_TOOL_STREAM = (
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1",'
    b'"type":"function","function":{"name":"bash","arguments":""}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"command\\":'
    b'\\"ls\\"}"}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    b"data: [DONE]\n\n"
)


class Slow(Policy):
    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        await asyncio.sleep(10)


class Broken(Policy):
    observes_events = True

    def observe(self, event_type: str, payload: object, request: ApiRequest) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "policy,text", [(Slow(), b"did not finish in time"), (Broken(), b"failed while processing")]
)
async def test_policy_failure_ends_stream_in_format(policy: Policy, text: bytes) -> None:
    p = await started(ApiKind.OPENAI, PolicyChain([policy]), policy_timeout_s=0.05)
    res = await p.on_response_body(OPENAI_TOOL_STREAM, False)
    assert res.end_of_stream and text in res.data and res.data.endswith(b"data: [DONE]\n\n")
    p.close()


class BlockAll(Policy):
    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall:
        return BlockToolCall(f"no {call.name} for you ({call.arguments['command']})")


async def test_blocked_tool_call_becomes_text_and_stop() -> None:
    p = await started(ApiKind.OPENAI, PolicyChain([BlockAll()]))
    out = await run_chunks(p, [OPENAI_TOOL_STREAM])
    datas = [
        json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: {")
    ]
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in datas if c["choices"])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in datas)
    assert text == "no bash for you (ls)"
    assert [c["choices"][0]["finish_reason"] for c in datas][-1] == "stop"
    assert datas[0]["choices"][0]["delta"]["role"] == "assistant"
    assert out.endswith(b"data: [DONE]\n\n")


async def test_error_status_passes_through_unchanged() -> None:
    p = make()
    p.on_request_headers(request_headers(), False)
    await p.on_request_body(b'{"model":"claude-x","messages":[]}')
    p.on_response_headers({":status": "529", "content-type": "application/json"}, False)
    assert p.mode is ResponseMode.PASSTHROUGH
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert (await p.on_response_body(body, True)).data == body


async def test_plain_text_error_rewritten_in_format() -> None:
    p = make()
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    out = p.on_response_headers({":status": "503", "content-type": "text/plain"}, False)
    assert out.set_headers["content-type"] == "application/json"
    assert (await p.on_response_body(b"no healthy ", False)).data == b""
    res = await p.on_response_body(b"upstream", True)
    err = json.loads(res.data)["error"]
    assert err["type"] == "server_error" and "no healthy upstream" in err["message"]


class Upper(Policy):
    rewrites_text = True
    holdback = 0

    def rewriter(self, request: ApiRequest) -> Upper:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        return [Span(start, len(text), "CHANGED")] if start < len(text) else []


async def test_json_response_goes_through_chain() -> None:
    original = b'{"id": "m", "content": [{"type": "text", "text": "x"}]}'
    p = await started(chain=PolicyChain([Touching()]), ctype="application/json")
    assert p.mode is ResponseMode.JSON
    assert (await p.on_response_body(original[:10], False)).data == b""
    assert (await p.on_response_body(original[10:], True)).data == original
    p = await started(chain=PolicyChain([Upper()]), ctype="application/json")
    res = await p.on_response_body(original, True)
    assert json.loads(res.data)["content"][0]["text"] == "CHANGED"


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


async def test_forwarded_paths_swap_gateway_key_for_provider_key() -> None:
    p = make(anthropic_api_key=SecretStr("sk-ant-provider"))
    headers = {":method": "POST", ":path": "/v1/messages/count_tokens", "x-api-key": KEY}
    out = p.on_request_headers(headers, False)
    # count_tokens is routed by the body's model: the gateway key goes at once.
    assert isinstance(out, Continue) and not out.clear_route_cache
    assert out.remove_headers == [
        "authorization",
        "x-api-key",
        "x-gateway-key",
        "x-gateway-upstream",
    ]
    out = await p.on_request_body(b'{"model": "claude-x", "messages": []}')
    assert isinstance(out, Continue) and out.clear_route_cache
    assert out.set_headers["x-api-key"] == "sk-ant-provider"
    assert out.set_headers["anthropic-version"] == "2023-06-01"
    assert out.set_headers["x-gateway-upstream"] == "anthropic"
    # Removing x-api-key in the same mutation that sets it would drop the provider key.
    assert out.remove_headers == ["authorization", "x-gateway-key"]
    assert out.body is None  # forwarded as it came

    p = make()
    p.on_request_headers(headers, False)
    bad = await p.on_request_body(b"not even json")
    assert isinstance(bad, Reject) and bad.status == 400
    p = make()
    p.on_request_headers(headers, False)
    unrouted = await p.on_request_body(b'{"model": "gpt-4o", "messages": []}')
    assert isinstance(unrouted, Reject) and unrouted.status == 400
    assert b"speaks the OpenAI API" in unrouted.body

    p = make(openai_api_key=SecretStr("sk-openai-provider"))
    out = p.on_request_headers({":method": "GET", ":path": "/v1/models", "x-api-key": KEY}, True)
    assert isinstance(out, Continue)
    assert out.set_headers == {
        "x-gateway-upstream": "openai",
        "authorization": "Bearer sk-openai-provider",
    }
    assert out.remove_headers == ["x-api-key", "x-gateway-key"]


async def test_query_string_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    p = make()
    out = p.on_request_headers(
        {":method": "GET", ":path": "/v1/messages?key=sk-secret-in-query", "x-api-key": KEY}, True
    )
    assert isinstance(out, Reject) and out.status == 405
    assert b"sk-secret" not in out.body
    assert "sk-secret" not in str(p.summary()) and "sk-secret" not in caplog.text
