"""The request side of the two kinds of requests: a policy endpoint (`PolicyRequest`:
the body checked, the request policies run, the model routed) and a forwarded one
(`ForwardedRequest`: key swapped, no body policy)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import orjson
import pytest
from pydantic import SecretStr

from extproc.core.decisions import Deny
from extproc.core.request import ApiRequest
from extproc.keys import Caller, KeyRegistry, digest
from extproc.pipeline import Continue, Immediate, Phase, RequestPipeline
from extproc.pipeline.processors import ForwardedRequest, PolicyRequest
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.pii_redaction import PiiRedactionPolicy
from extproc.policies.request_guard import RequestGuardConfig, RequestGuardPolicy
from tests.helpers.pipeline import SwapModel, Touching, request_headers, router_from, send
from tests.helpers.runtime import KEY, make_pipeline


def error_of(out: Continue | Immediate) -> dict[str, object]:
    assert isinstance(out, Immediate)
    error: dict[str, object] = json.loads(out.body)["error"]
    return error


# -- PolicyRequest: headers -----------------------------------------------------------------


def test_request_headers_checks() -> None:
    out = make_pipeline().on_request_headers(
        request_headers(**{"content-length": str(10**9)}), False
    )
    assert isinstance(out, Immediate) and out.status == 413
    out = make_pipeline().on_request_headers(request_headers(), True)
    assert isinstance(out, Immediate) and out.status == 400
    assert error_of(out)["message"] == "request body is required"


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({":method": "GET"}, 405, "method GET not allowed on /v1/messages; use POST"),
        (
            {"content-type": "text/plain"},
            415,
            "content-type must be application/json, got 'text/plain'",
        ),
        ({"content-type": ""}, 415, "content-type must be application/json, got 'none'"),
        ({"content-length": "101"}, 413, "request body of 101 bytes exceeds 100"),
    ],
)
def test_policy_path_refuses_in_format(headers: dict[str, str], status: int, message: str) -> None:
    p = make_pipeline(max_request_bytes=100)
    out = p.on_request_headers(request_headers(**headers), False)
    assert isinstance(out, Immediate) and out.status == status
    assert error_of(out)["message"] == message
    assert p.phase is Phase.DONE


def test_json_with_parameters_is_accepted_and_the_key_hidden() -> None:
    head = request_headers(**{"content-type": "application/json; charset=utf-8"})
    out = make_pipeline().on_request_headers(head, False)
    assert out == Continue(
        remove_headers=["authorization", "x-api-key", "x-gateway-key", "x-gateway-upstream"]
    )


def test_chain_reading_responses_refused_when_envoy_sends_none() -> None:
    p = make_pipeline(PolicyChain([Touching()]), envoy_sends_body=False)
    out = p.on_request_headers(request_headers(), False)
    assert isinstance(out, Immediate) and out.status == 503
    assert out.headers["retry-after"] == "1"
    assert "render the Envoy config again" in str(error_of(out)["message"])
    # A chain that reads no responses does not need them.
    p = make_pipeline(envoy_sends_body=False)
    assert isinstance(p.on_request_headers(request_headers(), False), Continue)


# -- PolicyRequest: body --------------------------------------------------------------------


async def body_answer(body: bytes, **kw: object) -> Continue | Immediate:
    p = make_pipeline(**kw)  # type: ignore[arg-type]
    assert isinstance(
        p.on_request_headers(request_headers("/v1/chat/completions"), False), Continue
    )
    return await p.on_request_body(body)


@pytest.mark.parametrize(
    ("body", "status", "message", "param"),
    [
        (b"not json", 400, "request body is not valid JSON", None),
        (b"[1]", 400, "request body must be a JSON object", None),
        (b'{"messages": []}', 400, "model: a model name is required", "model"),
        (b'{"model": "", "messages": []}', 400, "model: a model name is required", "model"),
        (b'{"model": "claude-x"}', 400, "messages: an array of messages is required", "messages"),
        (b'{"model": "claude-x", "messages": []}' + b" " * 100, 413, "exceeds 100", None),
    ],
)
async def test_body_problems_are_refused_in_format(
    body: bytes, status: int, message: str, param: str | None
) -> None:
    out = await body_answer(body, max_request_bytes=100)
    assert isinstance(out, Immediate) and out.status == status
    error = json.loads(out.body)["error"]
    assert message in error["message"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


async def test_body_problems_in_anthropic_format() -> None:
    p = make_pipeline()
    p.on_request_headers(request_headers(), False)
    out = await p.on_request_body(b'{"model": "claude-x"}')
    assert isinstance(out, Immediate) and json.loads(out.body) == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages: an array of messages is required",
        },
    }


async def test_a_model_the_caller_may_not_use_is_403() -> None:
    caller = Caller(name="ci", digest=digest(KEY), allowed_models=("claude-*",))
    p = make_pipeline(keys=KeyRegistry([caller]))
    out = await send(p, "/v1/messages", "gpt-4o")
    assert isinstance(out, Immediate) and out.status == 403
    assert error_of(out)["message"] == "this key may not use model 'gpt-4o'"
    p = make_pipeline(keys=KeyRegistry([caller]))
    assert isinstance(await send(p, "/v1/messages", "claude-x"), Continue)


class DenyAll(Policy[PolicyConfig]):
    reads_requests = True

    async def on_request(self, request: ApiRequest) -> Deny:
        return Deny(403, "not today")


class Hangs(Policy[PolicyConfig]):
    reads_requests = True

    async def on_request(self, request: ApiRequest) -> None:
        await asyncio.sleep(10)


class Raises(Policy[PolicyConfig]):
    reads_requests = True

    async def on_request(self, request: ApiRequest) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("policy", "status", "message"),
    [
        (DenyAll(), 403, "not today"),
        (Hangs(), 504, "request policies did not finish in time"),
        (Raises(), 500, "a gateway policy failed while checking the request"),
    ],
)
async def test_request_policy_verdicts_and_failures(
    policy: Policy[PolicyConfig], status: int, message: str
) -> None:
    p = make_pipeline(PolicyChain([policy]), policy_timeout_s=0.05)
    out = await send(p, "/v1/messages", "claude-x")
    assert isinstance(out, Immediate) and out.status == status
    assert error_of(out)["message"] == message
    assert p.phase is Phase.DONE and p.ctx is not None and p.ctx.upstream is None


async def test_the_parsed_request_and_an_unchanged_body() -> None:
    p = make_pipeline()
    out = await send(p, "/v1/messages", "claude-x")
    assert isinstance(out, Continue) and out.body is None
    assert p.processor is not None and (request := p.processor.request) is not None
    assert (request.api, request.path, request.model, request.stream) == (
        "anthropic",
        "/v1/messages",
        "claude-x",
        False,
    )
    assert p.phase is Phase.RESPONSE_HEADERS


async def test_a_body_changed_by_a_policy_is_sent_with_its_length() -> None:
    p = make_pipeline(PolicyChain([SwapModel("claude-y")]))
    out = await send(p, "/v1/messages", "claude-x")
    assert isinstance(out, Continue) and out.body is not None
    assert orjson.loads(out.body)["model"] == "claude-y"
    assert out.set_headers["content-length"] == str(len(out.body))


async def test_a_model_set_by_a_policy_is_checked_and_routed() -> None:
    for to, status, upstream in (
        ("gpt-4o", None, "openai"),
        (None, 500, None),
        ("llama", 400, None),
    ):
        p = make_pipeline(PolicyChain([SwapModel(to)]), router=router_from())
        out = await send(p, "/v1/chat/completions", "claude-x")
        if status is None:
            assert isinstance(out, Continue) and p.ctx is not None and p.ctx.upstream is not None
            assert p.ctx.upstream.name == upstream
        else:
            assert isinstance(out, Immediate) and out.status == status


async def test_a_model_set_by_a_policy_must_be_allowed_to_the_caller() -> None:
    caller = Caller(name="ci", digest=digest(KEY), allowed_models=("claude-*",))
    p = make_pipeline(PolicyChain([SwapModel("gpt-4o")]), keys=KeyRegistry([caller]))
    out = await send(p, "/v1/chat/completions", "claude-x")
    assert isinstance(out, Immediate) and out.status == 403


# -- ForwardedRequest -------------------------------------------------------------------


async def test_forwarded_paths_swap_gateway_key_for_provider_key() -> None:
    p = make_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
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

    p = make_pipeline()
    p.on_request_headers(headers, False)
    bad = await p.on_request_body(b"not even json")
    assert isinstance(bad, Immediate) and bad.status == 400
    p = make_pipeline()
    p.on_request_headers(headers, False)
    unrouted = await p.on_request_body(b'{"model": "gpt-4o", "messages": []}')
    assert isinstance(unrouted, Immediate) and unrouted.status == 400
    assert b"speaks the OpenAI API" in unrouted.body

    p = make_pipeline(openai_api_key=SecretStr("sk-openai-provider"))
    out = p.on_request_headers({":method": "GET", ":path": "/v1/models", "x-api-key": KEY}, True)
    assert isinstance(out, Continue)
    assert out.set_headers == {
        "x-gateway-upstream": "openai",
        "authorization": "Bearer sk-openai-provider",
    }
    assert out.remove_headers == ["x-api-key", "x-gateway-key"]


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        (
            "GET",
            "/v1/messages/count_tokens",
            "method GET not allowed on /v1/messages/count_tokens; use POST",
        ),
        ("POST", "/v1/models/", "method POST not allowed on /v1/models; use GET"),
        ("DELETE", "/v1/models/gpt-4o", "method DELETE not allowed on /v1/models/gpt-4o; use GET"),
    ],
)
def test_forwarded_path_with_the_wrong_method_is_405(method: str, path: str, message: str) -> None:
    out = make_pipeline().on_request_headers(
        {":method": method, ":path": path, "x-api-key": KEY}, False
    )
    assert isinstance(out, Immediate) and out.status == 405
    assert error_of(out)["message"] == message


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[]", 400, "request body must be a JSON object"),
        (b'{"model": 3}', 400, "model: a model name is required"),
        (b'{"model": "llama-3"}', 400, "no route matches it"),
    ],
)
async def test_count_tokens_body_problems(body: bytes, status: int, message: str) -> None:
    p = make_pipeline()
    head = {":method": "POST", ":path": "/v1/messages/count_tokens", "x-api-key": KEY}
    assert isinstance(p.on_request_headers(head, False), Continue)
    out = await p.on_request_body(body)
    assert isinstance(out, Immediate) and out.status == status
    assert message in str(error_of(out)["message"])


async def test_count_tokens_needs_a_body_and_an_allowed_model() -> None:
    head = {":method": "POST", ":path": "/v1/messages/count_tokens", "x-api-key": KEY}
    out = make_pipeline().on_request_headers(head, True)
    assert isinstance(out, Immediate) and out.status == 400
    caller = Caller(name="ci", digest=digest(KEY), allowed_models=("claude-a*",))
    p = make_pipeline(keys=KeyRegistry([caller]))
    p.on_request_headers(head, False)
    out = await p.on_request_body(b'{"model": "claude-b"}')
    assert isinstance(out, Immediate) and out.status == 403


async def test_a_path_routed_request_forwards_its_body_as_it_is() -> None:
    p = make_pipeline()
    head = {":method": "GET", ":path": "/v1/models/gpt-4o", "x-api-key": KEY}
    out = p.on_request_headers(head, False)  # a GET with a body: unusual, but harmless
    assert isinstance(out, Continue) and out.clear_route_cache
    # Routed by its path: Envoy keeps the body where it can (mode_override)...
    assert out.skip_body and p.phase is Phase.RESPONSE_HEADERS
    # ...and where it cannot, the body goes on untouched.
    assert await p.on_request_body(b"anything") == Continue()
    assert p.phase is Phase.RESPONSE_HEADERS
    assert isinstance(p, RequestPipeline) and p.processor is not None
    assert p.processor.request is None  # no body policy ran


# -- Responses API: forwarded paths ---------------------------------------------------------


def head(method: str, path: str) -> dict[str, str]:
    return {":method": method, ":path": path, "content-type": "application/json", "x-api-key": KEY}


async def compact(chain: PolicyChain, body: Mapping[str, object]) -> Continue | Immediate:
    p = make_pipeline(chain, openai_api_key=SecretStr("sk-openai-provider"))
    out = p.on_request_headers(head("POST", "/v1/responses/compact"), False)
    # Routed by its body: nothing but the gateway key is decided at the headers.
    assert isinstance(out, Continue) and not out.clear_route_cache
    return await p.on_request_body(orjson.dumps(body))


COMPACT_BODY: dict[str, object] = {
    "model": "gpt-5",
    "instructions": "summarize",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "mail me at ann@example.com"}]},
        {"type": "function_call_output", "call_id": "c1", "output": "key AKIAABCDEFGHIJKLMNOP"},
    ],
}


async def test_compact_runs_the_request_policies_and_they_rewrite_its_input() -> None:
    out = await compact(PolicyChain([PiiRedactionPolicy()]), COMPACT_BODY)
    assert isinstance(out, Continue) and out.clear_route_cache and out.body is not None
    sent = orjson.loads(out.body)
    assert sent["input"][0]["content"][0]["text"] == "mail me at [REDACTED:email]"
    assert sent["input"][1]["output"] == "key [REDACTED:secret]"
    assert sent["instructions"] == "summarize" and sent["model"] == "gpt-5"
    assert out.set_headers["content-length"] == str(len(out.body))
    assert out.set_headers["x-gateway-upstream"] == "openai"
    assert out.set_headers["authorization"] == "Bearer sk-openai-provider"
    # Nothing to redact: the body goes on as it came.
    clean = {"model": "gpt-5", "input": "compact this"}
    out = await compact(PolicyChain([PiiRedactionPolicy()]), clean)
    assert isinstance(out, Continue) and out.body is None and out.clear_route_cache


async def test_compact_refused_by_a_deny_pattern_in_the_apis_format() -> None:
    guard = RequestGuardPolicy(RequestGuardConfig(deny_patterns=[r"AKIA[A-Z0-9]{16}"]))
    out = await compact(PolicyChain([guard]), COMPACT_BODY)
    assert isinstance(out, Immediate) and out.status == 400
    assert json.loads(out.body) == {
        "error": {
            "message": (
                "Request rejected by the gateway policy: the request contains denied content."
            ),
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    fine = await compact(PolicyChain([guard]), {"model": "gpt-5", "input": "fine"})
    assert isinstance(fine, Continue) and fine.body is None


async def test_input_tokens_runs_the_request_policies() -> None:
    """Counting reads the whole prompt: a denied request is refused, a secret redacted."""
    denied = make_pipeline(PolicyChain([DenyAll()]), openai_api_key=SecretStr("sk-o"))
    denied.on_request_headers(head("POST", "/v1/responses/input_tokens"), False)
    out = await denied.on_request_body(orjson.dumps(COMPACT_BODY))
    assert isinstance(out, Immediate) and out.status == 403
    p = make_pipeline(PolicyChain([PiiRedactionPolicy()]), openai_api_key=SecretStr("sk-o"))
    assert isinstance(
        p.on_request_headers(head("POST", "/v1/responses/input_tokens"), False), Continue
    )
    out = await p.on_request_body(orjson.dumps(COMPACT_BODY))
    assert isinstance(out, Continue) and out.body is not None and out.clear_route_cache
    assert b"ann@example.com" not in out.body
    assert out.set_headers["x-gateway-upstream"] == "openai"


def test_a_stored_stream_resumed_midway_is_refused() -> None:
    """The replay would start after the parts and calls the policies must see whole."""
    p = make_pipeline(openai_api_key=SecretStr("sk-o"))
    out = p.on_request_headers(
        head("GET", "/v1/responses/resp_1?stream=true&starting_after=4"), True
    )
    assert isinstance(out, Immediate) and out.status == 400
    error = orjson.loads(out.body)["error"]
    assert error["param"] == "starting_after" and "whole response" in error["message"]
    # Without it, the whole replay goes through the policies.
    whole = make_pipeline(openai_api_key=SecretStr("sk-o"))
    assert isinstance(
        whole.on_request_headers(head("GET", "/v1/responses/resp_1?stream=true"), True), Continue
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses/resp_123"),
        ("DELETE", "/v1/responses/resp_123"),
        ("POST", "/v1/responses/resp_123/cancel"),
        ("GET", "/v1/responses/resp_123/input_items"),
        ("GET", "/v1/responses/resp_123/input_items?limit=5&order=asc"),
        ("GET", "/v1/responses/resp_123?stream=true"),
    ],
)
def test_stored_responses_go_to_the_apis_default_provider(method: str, path: str) -> None:
    p = make_pipeline(openai_api_key=SecretStr("sk-openai-provider"))
    out = p.on_request_headers(head(method, path), True)
    # No model anywhere: routed at the headers, to OpenAI, with its key.
    assert isinstance(out, Continue) and out.clear_route_cache
    assert out.set_headers == {
        "x-gateway-upstream": "openai",
        "authorization": "Bearer sk-openai-provider",
    }
    assert "x-api-key" in out.remove_headers
    assert isinstance(p.processor, ForwardedRequest)
    # A stored response read back (or cancelled) goes through the response policies
    # again; the input items are the caller's own.
    request = p.processor.request
    if "input_items" in path:
        assert request is None
    else:
        assert request is not None and (request.path, request.model) == (path.split("?")[0], "")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/v1/responses/resp_1", "GET or DELETE"),
        ("PUT", "/v1/responses/resp_1", "GET or DELETE"),
        ("GET", "/v1/responses/resp_1/cancel", "POST"),
        ("DELETE", "/v1/responses/resp_1/input_items", "GET"),
        # The fixed names win over `{id}`: these are not stored responses.
        ("GET", "/v1/responses/input_tokens", "POST"),
        ("DELETE", "/v1/responses/compact", "POST"),
    ],
)
def test_responses_paths_with_the_wrong_method_are_405(
    method: str, path: str, allowed: str
) -> None:
    out = make_pipeline().on_request_headers(head(method, path), False)
    assert isinstance(out, Immediate) and out.status == 405
    assert error_of(out) == {
        "message": f"method {method} not allowed on {path}; use {allowed}",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_the_responses_endpoint_itself_takes_only_post() -> None:
    out = make_pipeline().on_request_headers(head("GET", "/v1/responses"), True)
    assert isinstance(out, Immediate) and out.status == 405
    assert error_of(out)["message"] == "method GET not allowed on /v1/responses; use POST"
    p = make_pipeline()
    assert isinstance(p.on_request_headers(head("POST", "/v1/responses"), False), Continue)
    assert isinstance(p.processor, PolicyRequest)


def test_an_unknown_responses_path_is_404_in_the_apis_format() -> None:
    out = make_pipeline().on_request_headers(head("GET", "/v1/responses/resp_1/other"), True)
    assert isinstance(out, Immediate) and out.status == 404
    assert error_of(out)["type"] == "invalid_request_error"
