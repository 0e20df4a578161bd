"""The per-request pipeline without gRPC or Envoy: authentication, the path's processor,
fidelity of whole streams, what is logged."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.keys import Caller, KeyRegistry, digest
from extproc.pipeline import Continue, Immediate, Phase, RequestPipeline
from extproc.pipeline.processors import ForwardedRequest, PolicyRequest
from extproc.policies.base import Chains, PolicyChain
from extproc.policies.noop import NoOpPolicy
from tests.helpers.pipeline import (
    ANTHROPIC_STREAM,
    ANTHROPIC_TOOL_STREAM,
    OPENAI_TOOL_STREAM,
    BlockAll,
    Touching,
    Waits,
    data_payloads,
    request_headers,
    run_chunks,
    split,
    started,
    stream_of,
)
from tests.helpers.runtime import KEY, make_pipeline, make_runtime


@settings(max_examples=150, deadline=None)
@given(data=st.data(), dialect=st.sampled_from([ANTHROPIC, OPENAI_CHAT]), touching=st.booleans())
def test_noop_output_is_byte_identical_for_any_chunking(
    data: st.DataObject, dialect: Dialect, touching: bool
) -> None:
    stream = stream_of(dialect)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=40))
    chain = PolicyChain([Touching()]) if touching else None

    async def go() -> bytes:
        return await run_chunks(await started(dialect, chain), split(stream, cuts))

    assert asyncio.run(go()) == stream


def test_gateway_key_checked_in_the_paths_format() -> None:
    assert isinstance(make_pipeline().on_request_headers(request_headers(), False), Continue)
    out = make_pipeline().on_request_headers(request_headers(**{"x-api-key": "bad"}), False)
    assert isinstance(out, Immediate) and out.status == 401
    body = json.loads(out.body)
    assert body["error"]["type"] == "authentication_error" and "bad" not in out.body.decode()
    out = make_pipeline().on_request_headers(
        request_headers("/v1/chat/completions", **{"x-api-key": ""}), False
    )
    assert isinstance(out, Immediate) and json.loads(out.body)["error"]["code"] == "invalid_api_key"


def test_model_list_401_follows_the_anthropic_version_header() -> None:
    """Deliberate change: `/v1/models` is Anthropic's with `anthropic-version` (the path
    rule with its header picks the format, as Envoy's mappers do), OpenAI's without."""
    head = {":method": "GET", ":path": "/v1/models", "x-api-key": "wrong"}
    out = make_pipeline().on_request_headers({**head, "anthropic-version": "2023-06-01"}, True)
    assert isinstance(out, Immediate) and out.status == 401
    body = json.loads(out.body)
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "invalid or missing gateway key" in body["error"]["message"]
    out = make_pipeline().on_request_headers(head, True)
    assert isinstance(out, Immediate) and out.status == 401
    assert json.loads(out.body)["error"]["code"] == "invalid_api_key"


def test_caller_who_brings_own_key_needs_the_gateway_key_header() -> None:
    registry = KeyRegistry([Caller(name="claude-code", digest=digest(KEY), brings_own_key=True)])
    p = make_pipeline(keys=registry)
    out = p.on_request_headers(request_headers(), False)  # the gateway key as x-api-key
    assert isinstance(out, Immediate) and out.status == 401
    message = json.loads(out.body)["error"]["message"]
    assert message.startswith("this key brings its own provider key: send it as x-gateway-key")
    p = make_pipeline(keys=registry)
    head = request_headers(**{"x-gateway-key": KEY, "x-api-key": "sk-ant-own"})
    assert isinstance(p.on_request_headers(head, False), Continue)
    assert p.caller is not None and p.caller.name == "claude-code"


def test_caller_whose_chain_is_missing_gets_500() -> None:
    registry = KeyRegistry([Caller(name="ci", digest=digest(KEY), chain="strict")])
    p = make_pipeline(keys=registry)
    out = p.on_request_headers(request_headers(), False)
    assert isinstance(out, Immediate) and out.status == 500
    assert "policy chain is missing" in json.loads(out.body)["error"]["message"]
    assert p.complete


def test_each_caller_gets_its_own_chain() -> None:
    strict = PolicyChain([Touching()])
    registry = KeyRegistry(
        [Caller(name="ci", digest=digest(KEY), chain="strict"), Caller("other", digest("k2"))]
    )
    runtime = make_runtime(Chains(PolicyChain([NoOpPolicy()]), {"strict": strict}), keys=registry)
    p = RequestPipeline(runtime)
    assert isinstance(p.on_request_headers(request_headers(), False), Continue)
    assert p.ctx is not None and p.ctx.chain is strict and p.ctx.caller.name == "ci"
    p = RequestPipeline(runtime)
    assert isinstance(p.on_request_headers(request_headers(**{"x-api-key": "k2"}), False), Continue)
    assert p.ctx is not None and p.ctx.chain is runtime.chains.default


@pytest.mark.parametrize(
    ("path", "processor", "dialect"),
    [
        ("/v1/messages", PolicyRequest, ANTHROPIC),
        ("/v1/messages/", PolicyRequest, ANTHROPIC),
        ("/v1/chat/completions", PolicyRequest, OPENAI_CHAT),
        ("/v1/messages/count_tokens", ForwardedRequest, ANTHROPIC),
    ],
)
def test_the_path_picks_processor_and_dialect(path: str, processor: type, dialect: Dialect) -> None:
    p = make_pipeline()
    assert isinstance(p.on_request_headers(request_headers(path), False), Continue)
    assert isinstance(p.processor, processor)
    assert p.ctx is not None and p.ctx.dialect is dialect and p.ctx.path == path


@pytest.mark.parametrize(
    ("path", "dialect"), [("/v1/nope", ANTHROPIC), ("/v1/chat/x", OPENAI_CHAT)]
)
def test_unknown_endpoint_is_404_in_format(path: str, dialect: Dialect) -> None:
    p = make_pipeline()
    out = p.on_request_headers(request_headers(path), False)
    assert isinstance(out, Immediate) and out.status == 404
    assert out.body == dialect.error_body(404, f"no such endpoint: POST {path}")
    assert p.phase is Phase.DONE and p.status == 404


def test_clients_envoy_headers_are_removed() -> None:
    head = request_headers(**{"x-envoy-retry-on": "5xx", "x-envoy-max-retries": "9"})
    out = make_pipeline().on_request_headers(head, False)
    assert isinstance(out, Continue)
    assert {"x-envoy-retry-on", "x-envoy-max-retries"} <= set(out.remove_headers)


async def test_body_after_a_refusal_changes_nothing() -> None:
    p = make_pipeline()
    assert isinstance(p.on_request_headers(request_headers("/v1/nope"), False), Immediate)
    assert await p.on_request_body(b"{}") == Continue()


async def test_query_string_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    p = make_pipeline()
    out = p.on_request_headers(
        {":method": "GET", ":path": "/v1/messages?key=sk-secret-in-query", "x-api-key": KEY}, True
    )
    assert isinstance(out, Immediate) and out.status == 405
    assert b"sk-secret" not in out.body
    assert "sk-secret" not in str(p.summary()) and "sk-secret" not in caplog.text


async def test_blocked_tool_call_becomes_text_and_stop() -> None:
    p = await started(OPENAI_CHAT, PolicyChain([BlockAll()]))
    out = await run_chunks(p, [OPENAI_TOOL_STREAM])
    datas = data_payloads(out)
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in datas if c["choices"])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in datas)
    assert text == "no bash for you (ls)"
    assert [c["choices"][0]["finish_reason"] for c in datas][-1] == "stop"
    assert datas[0]["choices"][0]["delta"]["role"] == "assistant"
    assert out.endswith(b"data: [DONE]\n\n")


async def test_trailers_end_the_body() -> None:
    p = await started()
    first = await p.on_response_body(ANTHROPIC_STREAM[:-2], False)  # no blank line yet
    last = await p.on_response_trailers()
    assert first.data + last.data == ANTHROPIC_STREAM[:-2]
    assert last.data and not last.end_of_stream  # the trailers reply ends the stream
    assert p.complete and p.phase is Phase.DONE


async def test_summary_of_a_stream() -> None:
    p = await started()
    await run_chunks(p, [ANTHROPIC_STREAM])
    summary = p.summary()
    assert {k: summary[k] for k in ("caller", "method", "path", "model", "stream")} == {
        "caller": "GATEWAY_API_KEYS[0]",
        "method": "POST",
        "path": "/v1/messages",
        "model": "claude-x",
        "stream": True,
    }
    assert summary["upstream"] == "anthropic" and summary["status"] == 200
    assert summary["mode"] == "sse" and summary["events"] == 8
    assert summary["bytes_out"] == len(ANTHROPIC_STREAM) and summary["ms"] >= 0
    assert "violations" not in summary  # only with validate_streams


async def test_summary_counts_violations_when_streams_are_validated() -> None:
    p = await started(validate_streams=True)
    await run_chunks(p, [ANTHROPIC_STREAM])
    assert p.summary()["violations"] == 0
    p = await started(validate_streams=True)
    cut = ANTHROPIC_STREAM.index(b"event: content_block_stop")
    await run_chunks(p, [ANTHROPIC_STREAM[:cut]])  # ended early: the gateway's error ends it
    assert p.summary()["violations"] == 0


async def test_summary_of_a_forwarded_request() -> None:
    """Deliberate change: a forwarded body's mode is logged as "forward" (was
    "passthrough")."""
    p = make_pipeline()
    head = {":method": "GET", ":path": "/v1/models", "x-api-key": KEY, "x-request-id": "r-1"}
    assert isinstance(p.on_request_headers(head, True), Continue)
    p.on_response_headers({":status": "200", "content-type": "application/json"}, False)
    await run_chunks(p, [b'{"data": []}'])
    summary = p.summary()
    assert summary["mode"] == "forward" and summary["id"] == "r-1"
    assert summary["model"] is None and summary["upstream"] == "openai"
    assert summary["bytes_out"] == len(b'{"data": []}')


async def test_close_cancels_pending_policy_work() -> None:
    policy = Waits()
    p = await started(chain=PolicyChain([policy]))
    cut = ANTHROPIC_TOOL_STREAM.index(b"event: message_delta")
    out = await p.on_response_body(ANTHROPIC_TOOL_STREAM[:cut], False)
    assert b"tool_use" not in out.data  # held until decided
    async with asyncio.timeout(5):
        await policy.started.wait()
    p.close()
    async with asyncio.timeout(5):
        await policy.cancelled.wait()
    p.close()  # twice is harmless
