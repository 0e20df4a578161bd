"""Requests routed from what Envoy read of their body (`pipeline/facts.py`): a request
nothing needs the body of is routed from its request headers' message alone, and Envoy
is told to keep the body; every other one is read and checked as before."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from pydantic import SecretStr

from extproc.contract import MODEL_FACT, STREAM_FACT, UNREADABLE_FACT, UPSTREAM_HEADER
from extproc.keys import Caller, KeyRegistry, digest
from extproc.pipeline import Continue, Immediate, Phase, RequestPipeline
from extproc.pipeline.facts import RequestFacts, facts_from
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.request_guard import RequestGuardConfig, RequestGuardPolicy
from extproc.policies.string_replacement import (
    Replacement,
    StringReplacementConfig,
    StringReplacementPolicy,
)
from tests.helpers.limits_runtime import limited_runtime
from tests.helpers.pipeline import request_headers
from tests.helpers.runtime import KEY, make_pipeline

CLAUDE = RequestFacts("claude-x", True)
REPLACE = StringReplacementConfig(replacements=[Replacement(pattern="a", replacement="b")])


def fast_pipeline(chain: PolicyChain | None = None, **kw: object) -> RequestPipeline:
    """A pipeline behind an Envoy that sends no responses to ext_proc."""
    return make_pipeline(chain, envoy_sends_body=False, **kw)


@pytest.mark.parametrize(
    ("metadata", "facts"),
    [
        ({MODEL_FACT: "claude-x", STREAM_FACT: True}, CLAUDE),
        ({MODEL_FACT: "gpt-4o"}, RequestFacts("gpt-4o", False)),
        ({MODEL_FACT: "gpt-4o", STREAM_FACT: False}, RequestFacts("gpt-4o", False)),
        (None, None),
        ({}, None),
        ({UNREADABLE_FACT: True}, None),
        ({MODEL_FACT: "claude-x", UNREADABLE_FACT: True}, None),
        ({MODEL_FACT: ""}, None),
        ({MODEL_FACT: None}, None),  # a number or an object: not a name
        ({STREAM_FACT: True}, None),  # no model
        ({MODEL_FACT: "claude-x", STREAM_FACT: "true"}, None),
        ({MODEL_FACT: "claude-x", STREAM_FACT: None}, None),
    ],
)
def test_facts_are_used_only_when_they_are_what_the_gateway_routes_by(
    metadata: dict[str, object] | None, facts: RequestFacts | None
) -> None:
    assert facts_from(metadata) == facts


def test_a_request_nothing_reads_is_routed_from_the_facts_alone() -> None:
    p = fast_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = p.on_request_headers(request_headers(), False, CLAUDE)
    assert isinstance(out, Continue)
    assert out.skip_body and out.clear_route_cache
    assert out.set_headers[UPSTREAM_HEADER].startswith("anthropic")
    assert out.set_headers["x-api-key"] == "sk-ant-provider"
    assert "x-gateway-key" in out.remove_headers and "x-api-key" not in out.remove_headers
    # No body comes: the request went upstream, and nothing of the response comes.
    assert p.phase is Phase.RESPONSE_HEADERS and p.complete
    summary = p.summary()
    assert (summary["model"], summary["stream"]) == ("claude-x", True)
    assert str(summary["upstream"]).startswith("anthropic")


def test_without_usable_facts_the_body_is_read_and_checked_as_before() -> None:
    p = fast_pipeline()
    out = p.on_request_headers(request_headers(), False, None)
    assert isinstance(out, Continue) and not out.skip_body
    assert UPSTREAM_HEADER not in out.set_headers and not out.clear_route_cache
    assert p.phase is Phase.REQUEST_BODY


async def test_an_unreadable_body_still_gets_the_gateways_own_400() -> None:
    p = fast_pipeline()
    p.on_request_headers(request_headers(), False, facts_from({UNREADABLE_FACT: True}))
    out = await p.on_request_body(b"{not json")
    assert isinstance(out, Immediate) and out.status == 400
    assert json.loads(out.body)["error"]["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    "chain",
    [
        PolicyChain([RequestGuardPolicy(RequestGuardConfig(type="request_guard"))]),
        # Reads responses, hence its request too (and so does a config that rewrites
        # requests): Envoy sends such a configuration's responses to ext_proc anyway.
        PolicyChain([StringReplacementPolicy(REPLACE)]),
        # A shadow check records what it would have done: it reads the body too.
        PolicyChain([RequestGuardPolicy(RequestGuardConfig(mode="shadow"))]),
    ],
    ids=["request_policy", "response_policy", "shadow_request_policy"],
)
def test_a_chain_that_reads_the_body_gets_it(chain: PolicyChain) -> None:
    p = make_pipeline(chain, envoy_sends_body=True)
    out = p.on_request_headers(request_headers(), False, CLAUDE)
    assert isinstance(out, Continue) and not out.skip_body and not out.clear_route_cache
    assert p.phase is Phase.REQUEST_BODY


def test_with_limits_the_body_is_read_to_count_it() -> None:
    runtime = limited_runtime({"default": {"requests": {"per_minute": 5}}}, time.time)
    p = RequestPipeline(runtime, envoy_sends_body=True)  # limits meter responses
    out = p.on_request_headers(request_headers(), False, CLAUDE)
    assert isinstance(out, Continue) and not out.skip_body


async def test_a_body_sent_although_routed_passes() -> None:
    """An Envoy that does not take the override (a hand-written config without
    allow_mode_override) sends the body anyway: it goes on untouched."""
    p = fast_pipeline()
    assert isinstance(p.on_request_headers(request_headers(), False, CLAUDE), Continue)
    out = await p.on_request_body(b'{"model": "gpt-4o", "messages": []}')
    assert out == Continue()
    assert p.complete and p.summary()["model"] == "claude-x"


def test_the_callers_model_allowance_holds_on_the_facts() -> None:
    caller = Caller(name="ci", digest=digest(KEY), allowed_models=("claude-*",))
    p = fast_pipeline(keys=KeyRegistry([caller]))
    out = p.on_request_headers(request_headers(), False, RequestFacts("gpt-4o", False))
    assert isinstance(out, Immediate) and out.status == 403
    assert json.loads(out.body)["error"]["message"] == "this key may not use model 'gpt-4o'"
    p = fast_pipeline(keys=KeyRegistry([caller]))
    assert isinstance(p.on_request_headers(request_headers(), False, CLAUDE), Continue)


def test_a_model_no_route_serves_is_refused_in_format() -> None:
    p = fast_pipeline()
    out = p.on_request_headers(request_headers(), False, RequestFacts("gpt-4o", False))
    assert isinstance(out, Immediate) and out.status == 400
    error = json.loads(out.body)
    assert error["type"] == "error" and "gpt-4o" in error["error"]["message"]


def test_forwarded_body_routed_paths_use_the_facts_too() -> None:
    p = fast_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    out = p.on_request_headers(request_headers("/v1/messages/count_tokens"), False, CLAUDE)
    assert isinstance(out, Continue) and out.skip_body
    assert out.set_headers["x-api-key"] == "sk-ant-provider"
    assert p.phase is Phase.RESPONSE_HEADERS
    p = fast_pipeline()
    out = p.on_request_headers(request_headers("/v1/messages/count_tokens"), False, None)
    assert isinstance(out, Continue) and not out.skip_body


async def test_an_asked_for_body_is_routed_as_before() -> None:
    p = fast_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    assert isinstance(p.on_request_headers(request_headers(), False, None), Continue)
    body = {"model": "claude-x", "max_tokens": 5, "messages": []}
    out = await p.on_request_body(orjson.dumps(body))
    assert isinstance(out, Continue) and out.clear_route_cache
    assert out.set_headers["x-api-key"] == "sk-ant-provider"


def test_a_policy_that_checks_requests_must_say_so() -> None:
    with pytest.raises(TypeError, match="reads_requests"):

        class Silent(Policy[PolicyConfig]):
            async def on_request(self, request: object) -> None:  # type: ignore[override]
                return None


def test_responses_through_ext_proc_need_the_request() -> None:
    """With response processing on, the stream's handling reads the request: even a
    noop chain's request is parsed (Envoy would not take the override anyway)."""
    p = make_pipeline(envoy_sends_body=True)
    out = p.on_request_headers(request_headers(), False, CLAUDE)
    assert isinstance(out, Continue) and not out.skip_body and not out.clear_route_cache


def test_routing_from_facts_keeps_the_clients_headers_out() -> None:
    p = fast_pipeline(anthropic_api_key=SecretStr("sk-ant-provider"))
    head = request_headers(
        **{UPSTREAM_HEADER: "somewhere-else", "x-envoy-retry-on": "5xx", "x-gateway-key": KEY}
    )
    out = p.on_request_headers(head, False, CLAUDE)
    assert isinstance(out, Continue)
    # Set with OVERWRITE: the client's routing header never survives.
    assert out.set_headers[UPSTREAM_HEADER].startswith("anthropic")
    assert {"x-envoy-retry-on", "x-gateway-key"} <= set(out.remove_headers)


def test_a_caller_with_its_own_provider_key_keeps_it_on_the_fast_path() -> None:
    caller = Caller(name="claude-code", digest=digest(KEY), brings_own_key=True)
    p = fast_pipeline(keys=KeyRegistry([caller]))
    out = p.on_request_headers(request_headers(**{"x-gateway-key": KEY}), False, CLAUDE)
    assert isinstance(out, Continue) and out.skip_body
    assert "x-api-key" not in out.remove_headers and "x-gateway-key" in out.remove_headers


def test_a_policy_whose_request_check_comes_from_a_mixin_must_say_so_too() -> None:
    class Checks:
        async def on_request(self, request: object) -> None:
            return None

    with pytest.raises(TypeError, match="reads_requests"):

        class Mixed(Checks, Policy[PolicyConfig]):  # type: ignore[misc]
            pass
