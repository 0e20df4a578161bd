"""Which upstream a request goes to, and the headers that send it there: the routing
header, the provider key in place of the gateway key, the headers the API requires."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from extproc.config import Settings
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.keys import Caller, KeyRegistry, digest
from extproc.pipeline import Continue, Immediate
from extproc.pipeline.upstream import (
    headers_for,
    key_headers,
    upstream_for_listing,
    upstream_for_model,
)
from extproc.routing import Router, Upstream
from tests.helpers.pipeline import request_headers, router_from, send
from tests.helpers.runtime import KEY, make_pipeline

CALLER = Caller(name="team", digest=digest(KEY))
OWN_KEY = Caller(name="claude-code", digest=digest(KEY), brings_own_key=True)


def keyed_router() -> Router:
    return Router.build(
        Settings(anthropic_api_key=SecretStr("sk-ant"), openai_api_key=SecretStr("sk-oai")),
        env={},
    )


# -- the functions --------------------------------------------------------------------------


def test_key_headers() -> None:
    assert key_headers(CALLER, {}) == ["authorization", "x-api-key", "x-gateway-key"]
    assert key_headers(None, {}) == ["authorization", "x-api-key", "x-gateway-key"]
    # Never one the same mutation sets (the provider's key).
    assert key_headers(CALLER, {"x-api-key": "sk"}) == ["authorization", "x-gateway-key"]
    # A caller with its own provider key keeps that credential.
    assert key_headers(OWN_KEY, {}) == ["x-gateway-key"]
    assert key_headers(OWN_KEY, {"authorization": "x"}) == ["x-gateway-key"]


@pytest.mark.parametrize(
    ("dialect", "upstream", "credential"),
    [
        (ANTHROPIC, "anthropic", {"x-api-key": "sk-ant"}),
        (OPENAI_CHAT, "anthropic", {"authorization": "Bearer sk-ant"}),
        (OPENAI_CHAT, "openai", {"authorization": "Bearer sk-oai"}),
    ],
)
def test_credential_header_per_dialect(
    dialect: object, upstream: str, credential: dict[str, str]
) -> None:
    found = keyed_router().upstreams[upstream]
    out = headers_for(found, CALLER, dialect, {})  # type: ignore[arg-type]
    assert out.upstream is found
    assert out.set_headers == {"x-gateway-upstream": upstream, **credential}
    assert out.remove_headers == [
        h for h in ("authorization", "x-api-key", "x-gateway-key") if h not in credential
    ]


def test_no_key_no_credential_and_added_headers_go_along() -> None:
    mock = Router.build(Settings(), env={}).upstreams["anthropic"]
    added = ANTHROPIC.added_headers({})
    out = headers_for(mock, CALLER, ANTHROPIC, added)
    assert out.set_headers == {"x-gateway-upstream": "mock", "anthropic-version": "2023-06-01"}
    assert out.remove_headers == ["authorization", "x-api-key", "x-gateway-key"]


def test_a_caller_with_its_own_key_goes_to_the_real_api_with_it() -> None:
    mock = Router.build(Settings(), env={}).upstreams["anthropic"]
    out = headers_for(mock, OWN_KEY, ANTHROPIC, {})
    assert out.upstream.base_url == "https://api.anthropic.com" and not out.upstream.is_mock
    assert out.set_headers == {"x-gateway-upstream": "anthropic"}
    assert out.remove_headers == ["x-gateway-key"]
    # The gateway's own key is never injected for it.
    real = keyed_router().upstreams["openai"]
    out = headers_for(real, OWN_KEY, OPENAI_CHAT, {})
    assert out.set_headers == {"x-gateway-upstream": "openai"}


def test_anthropic_version_added_only_when_missing() -> None:
    assert ANTHROPIC.added_headers({}) == {"anthropic-version": "2023-06-01"}
    assert ANTHROPIC.added_headers({"anthropic-version": "2099-01-01"}) == {}
    assert OPENAI_CHAT.added_headers({}) == {}


def test_upstream_for_model() -> None:
    router = router_from()
    assert upstream_for_model(router, "claude-x", ANTHROPIC) is router.upstreams["anthropic"]
    assert upstream_for_model(router, "claude-x", OPENAI_CHAT) is router.upstreams["anthropic"]
    assert upstream_for_model(router, "gpt-4o", OPENAI_CHAT) is router.upstreams["openai"]
    wrong = upstream_for_model(router, "gpt-4o", ANTHROPIC)
    assert wrong == (
        "model 'gpt-4o' is served by provider 'openai', which speaks the OpenAI API: call "
        "/v1/chat/completions for it"
    )
    unrouted = upstream_for_model(router, "llama-" + "x" * 300, OPENAI_CHAT)
    assert isinstance(unrouted, str) and "no route matches it" in unrouted
    assert unrouted.startswith(f"model 'llama-{'x' * 194}' is not served")  # cut at 200
    assert unrouted.endswith("(routed models: claude-*, gpt-*, o1*, o3*, o4*, text-embedding-*)")


def test_upstream_for_listing() -> None:
    router = router_from(
        "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1'}}\n"
        "routes: [{models: ['gpt-*'], provider: openai}, {models: ['llama-*'], provider: local},"
        " {models: ['claude-*'], provider: anthropic}]"
    )
    up = router.upstreams
    assert upstream_for_listing(router, OPENAI_CHAT, "") is up["openai"]
    assert upstream_for_listing(router, ANTHROPIC, "") is up["anthropic"]
    assert upstream_for_listing(router, OPENAI_CHAT, "llama-3") is up["local"]
    # A model of another API's provider: the client's API's default provider.
    assert upstream_for_listing(router, ANTHROPIC, "llama-3") is up["anthropic"]
    assert upstream_for_listing(router, OPENAI_CHAT, "claude-x") is up["openai"]
    assert upstream_for_listing(router, OPENAI_CHAT, "unrouted") is up["openai"]


# -- through the pipeline -----------------------------------------------------------------


async def test_gateway_key_removed_and_routing_header_set() -> None:
    for model, upstream in (("claude-sonnet-5-5", "anthropic"), ("gpt-4o", "openai")):
        p = make_pipeline(openai_api_key=SecretStr("sk-o"), anthropic_api_key=SecretStr("sk-a"))
        out = p.on_request_headers(request_headers("/v1/chat/completions"), False)
        assert isinstance(out, Continue)
        assert {"authorization", "x-api-key", "x-gateway-upstream"} <= set(out.remove_headers)
        body = {"model": model, "messages": []}
        res = await p.on_request_body(json.dumps(body).encode())
        assert isinstance(res, Continue) and res.clear_route_cache
        assert res.set_headers["x-gateway-upstream"] == upstream
        assert res.body is None  # unchanged request: Envoy forwards the original bytes


async def test_provider_key_injected_only_for_real_upstream() -> None:
    p = make_pipeline(openai_api_key=SecretStr("sk-provider"))
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    res = await p.on_request_body(b'{"model":"gpt-4o","messages":[]}')
    assert isinstance(res, Continue) and res.set_headers["authorization"] == "Bearer sk-provider"
    assert res.set_headers["x-gateway-upstream"] == "openai"
    # No Anthropic key: the mock's own cluster, and nothing injected.
    p = make_pipeline(openai_api_key=SecretStr("sk-provider"))
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    res = await p.on_request_body(b'{"model":"claude-x","messages":[]}')
    assert isinstance(res, Continue) and "authorization" not in res.set_headers
    assert res.set_headers["x-gateway-upstream"] == "mock"


async def test_unknown_model_is_a_400_in_each_format() -> None:
    out = await send(make_pipeline(), "/v1/messages", "llama-3-70b")
    assert isinstance(out, Immediate) and out.status == 400
    body = json.loads(out.body)
    assert body["error"]["type"] == "invalid_request_error"
    assert "no route matches it" in body["error"]["message"]
    assert "claude-*" in body["error"]["message"]
    out = await send(make_pipeline(), "/v1/chat/completions", "llama-3-70b")
    assert isinstance(out, Immediate) and out.status == 400
    assert json.loads(out.body)["error"]["param"] == "model"


async def test_openai_model_on_messages_endpoint_is_refused() -> None:
    out = await send(make_pipeline(), "/v1/messages", "gpt-4o")
    assert isinstance(out, Immediate) and out.status == 400
    assert "call /v1/chat/completions" in json.loads(out.body)["error"]["message"]


async def test_claude_on_chat_completions_goes_to_anthropic_with_bearer_key() -> None:
    p = make_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/chat/completions", "claude-sonnet-5-5")
    assert isinstance(out, Continue)
    assert out.set_headers == {
        "x-gateway-upstream": "anthropic",
        "authorization": "Bearer sk-ant-provider",  # what Anthropic's OpenAI endpoint takes
    }


async def test_native_anthropic_gets_key_and_version_but_keeps_the_clients_version() -> None:
    p = make_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/messages", "claude-sonnet-5-5")
    assert isinstance(out, Continue)
    assert out.set_headers["x-api-key"] == "sk-ant-provider"
    assert out.set_headers["anthropic-version"] == "2023-06-01"
    p = make_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = await send(p, "/v1/messages", "claude-x", **{"anthropic-version": "2099-01-01"})
    assert isinstance(out, Continue) and "anthropic-version" not in out.set_headers


async def test_custom_provider_gets_its_own_key() -> None:
    r = router_from(
        "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1', key_env: LK}}\n"
        "routes: [{models: ['llama-*'], provider: local}]",
        LK="sk-local",
    )
    out = await send(make_pipeline(router=r), "/v1/chat/completions", "llama-3")
    assert isinstance(out, Continue)
    cluster = r.upstreams["local"].cluster
    assert out.set_headers == {"x-gateway-upstream": cluster, "authorization": "Bearer sk-local"}
    # Named after where it goes: a config rendered for another URL has no such cluster.
    assert cluster.startswith("local-") and cluster != "local"


async def test_passthrough_callers_reach_the_real_api_not_the_mock() -> None:
    registry = KeyRegistry([OWN_KEY])
    p = make_pipeline(keys=registry)
    head = {
        ":method": "POST",
        ":path": "/v1/messages",
        "content-type": "application/json",
        "x-gateway-key": KEY,
        "authorization": "Bearer sk-ant-oauth-own",
    }
    assert isinstance(p.on_request_headers(head, False), Continue)
    body = {"model": "claude-x", "max_tokens": 5, "messages": []}
    out = await p.on_request_body(json.dumps(body).encode())
    assert isinstance(out, Continue)
    # The gateway has no Anthropic key, so its own callers get the mock; this caller's
    # credential goes to the real API, whose cluster render(any_keys=True) provides.
    assert out.set_headers["x-gateway-upstream"] == "anthropic"
    assert "authorization" not in out.set_headers and "x-api-key" not in out.set_headers
    assert p.ctx is not None and p.ctx.upstream is not None
    assert p.ctx.upstream.base_url == "https://api.anthropic.com"


async def test_model_detail_goes_to_the_provider_serving_that_model() -> None:
    r = router_from(
        "providers: {local: {api: openai, base_url: 'http://127.0.0.1:1', key_env: LK}}\n"
        "routes: [{models: ['gpt-*'], provider: openai}, {models: ['llama-*'], provider: local}]",
        LK="sk-local",
    )
    for path, cluster in (
        ("/v1/models/llama-3", r.upstreams["local"].cluster),
        ("/v1/models/gpt-4o", "mock"),  # openai, falling back to the mock without a key
        ("/v1/models", "mock"),
    ):
        p = make_pipeline(router=r)
        out = p.on_request_headers({":method": "GET", ":path": path, "x-api-key": KEY}, True)
        assert isinstance(out, Continue), path
        assert out.set_headers["x-gateway-upstream"] == cluster, path


async def test_model_list_of_anthropic_clients_goes_to_anthropic() -> None:
    p = make_pipeline(anthropic_api_key=SecretStr("sk-ant"))
    head = {
        ":method": "GET",
        ":path": "/v1/models",
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
    }
    out = p.on_request_headers(head, True)
    assert isinstance(out, Continue) and out.clear_route_cache
    assert out.set_headers == {"x-gateway-upstream": "anthropic", "x-api-key": "sk-ant"}
    assert p.ctx is not None and isinstance(p.ctx.upstream, Upstream)
