"""Model routing end to end: two mock providers on their own ports play "anthropic" and
"openai"; each records what reaches it. The routing table comes from the config file,
the provider keys from the gateway's environment (key_env)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY, Settings
from extproc.contract import NO_CLUSTER_MESSAGE
from extproc.gateway import Gateway
from extproc.keys import digest
from extproc.routing import Router
from extproc.stack import Stack, free_port
from tests.helpers.providers import MockProvider
from tests.helpers.stack import envoy_stats, running_stack, start_logged

pytestmark = pytest.mark.e2e

APP_KEY = "sk-gw-routing-app"
CC_KEY = "sk-gw-routing-claude-code"
ANT_KEY = "sk-ant-from-gateway-env"
OAI_KEY = "sk-oai-from-gateway-env"
CLIENT_OWN_KEY = "sk-ant-client-oauth-token"
SECRETS = (APP_KEY, CC_KEY, ANT_KEY, OAI_KEY, CLIENT_OWN_KEY)
MESSAGE: Any = [{"role": "user", "content": "Repeat after me: routed fine"}]


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MockProvider]]:
    log_dir = tmp_path_factory.mktemp("providers")
    started: dict[str, MockProvider] = {}
    try:
        for name in ("anthropic", "openai"):
            started[name] = MockProvider(name, log_dir)
        yield started
    finally:
        for provider in started.values():
            provider.stop()


@pytest.fixture(scope="module")
def routed(
    providers: dict[str, MockProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("routing")
    (log_dir / "gateway.yaml").write_text(
        f"""
policies: [{{type: noop}}]
providers:
  anthropic: {{api: anthropic, base_url: "{providers["anthropic"].url}", key_env: TEAM_ANT_KEY}}
  openai:
    api: openai
    base_url: "{providers["openai"].url}/v1"
    key_env: TEAM_OAI_KEY
    connect_timeout_s: 2
  # Nothing listens there; a path prefix, so Envoy rewrites the path it routes.
  nowhere: {{api: openai, base_url: "http://127.0.0.1:{free_port()}/team/v1", connect_timeout_s: 1}}
  nowhere-claude: {{api: anthropic, base_url: "http://127.0.0.1:{free_port()}/team"}}
routes:
  - {{models: ["claude-offline-*"], provider: nowhere-claude}}
  - {{models: ["claude-*"], provider: anthropic}}
  - {{models: ["gpt-*", "o1*", "o3*", "o4*"], provider: openai}}
  - {{models: ["offline-*"], provider: nowhere}}
"""
    )
    (log_dir / "keys.yaml").write_text(
        "callers:\n"
        f"  - {{name: app, key_sha256: '{digest(APP_KEY).hex()}'}}\n"
        f"  - {{name: claude-code, key_sha256: '{digest(CC_KEY).hex()}', brings_own_key: true}}\n"
    )
    with running_stack(
        log_dir,
        policy_config=str(log_dir / "gateway.yaml"),
        keys_file=str(log_dir / "keys.yaml"),
        extra_env={"TEAM_ANT_KEY": ANT_KEY, "TEAM_OAI_KEY": OAI_KEY},
    ) as st:
        yield st


@pytest.fixture(autouse=True)
def _fresh(providers: dict[str, MockProvider]) -> None:
    for provider in providers.values():
        provider.clear()


def _claude(st: Stack, key: str = APP_KEY, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=st.base_url, api_key=key, max_retries=0, **kw)


def _openai(st: Stack, key: str = APP_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=key, max_retries=0)


def _only(providers: dict[str, MockProvider], name: str) -> dict[str, Any]:
    """The single request `name` received; the other provider received none."""
    for other, provider in providers.items():
        if other != name:
            assert provider.requests() == [], f"{other} should have received nothing"
    (record,) = providers[name].requests()
    headers = record["headers"]
    for secret in (APP_KEY, CC_KEY):
        assert secret not in str(headers), "a gateway key reached the provider"
    assert "x-gateway-key" not in headers and "x-gateway-upstream" not in headers
    return record


# -- routing by model, both endpoints ----------------------------------------------------


def test_messages_with_claude_reach_anthropic_with_its_key(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    client = _claude(routed, default_headers={"anthropic-beta": "tools-2099-01-01"})
    reply = client.messages.create(model="claude-sonnet-5-5", max_tokens=50, messages=MESSAGE)
    assert reply.content[0].text == "routed fine"  # type: ignore[union-attr]
    record = _only(providers, "anthropic")
    assert record["path"] == "/v1/messages"
    headers = record["headers"]
    assert headers["x-api-key"] == ANT_KEY
    assert "authorization" not in headers
    # The SDK's own version is forwarded, not replaced by the gateway's default.
    assert headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert headers["anthropic-beta"] == "tools-2099-01-01"


def test_curl_without_anthropic_version_gets_one(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    body = {"model": "claude-sonnet-5-5", "max_tokens": 20, "messages": MESSAGE}
    resp = httpx.post(f"{routed.base_url}/v1/messages", json=body, headers={"x-api-key": APP_KEY})
    assert resp.status_code == 200
    assert _only(providers, "anthropic")["headers"]["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_route_by_model(
    routed: Stack, providers: dict[str, MockProvider], stream: bool
) -> None:
    client = _openai(routed)
    for model, name, key in (
        ("gpt-4o-mini", "openai", OAI_KEY),
        ("o3-mini", "openai", OAI_KEY),
        # Anthropic's OpenAI-compatible endpoint takes its key as a Bearer token.
        ("claude-sonnet-5-5", "anthropic", ANT_KEY),
    ):
        if stream:
            chunks = client.chat.completions.create(model=model, messages=MESSAGE, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model=model, messages=MESSAGE)
            text = reply.choices[0].message.content or ""
        assert text == "routed fine"
        record = _only(providers, name)
        assert record["path"] == "/v1/chat/completions"
        assert record["body"]["model"] == model
        assert record["headers"]["authorization"] == f"Bearer {key}"
        assert "x-api-key" not in record["headers"]
        providers[name].clear()


def test_unknown_model_is_400_in_each_sdk(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="no route matches it"):
        _claude(routed).messages.create(model="llama-3-70b", max_tokens=5, messages=MESSAGE)
    with pytest.raises(openai.BadRequestError, match="no route matches it") as err:
        _openai(routed).chat.completions.create(model="llama-3-70b", messages=MESSAGE)
    assert err.value.param == "model"
    with pytest.raises(anthropic.BadRequestError, match="call /v1/chat/completions"):
        _claude(routed).messages.create(model="gpt-4o", max_tokens=5, messages=MESSAGE)
    assert all(p.requests() == [] for p in providers.values())


def test_unreachable_provider_fails_in_format(routed: Stack) -> None:
    """Envoy's own 503, in the format of the endpoint the client called, also when the
    provider's base URL path changed the path Envoy sent."""
    with pytest.raises(openai.InternalServerError) as o_err:
        _openai(routed).chat.completions.create(model="offline-1", messages=MESSAGE)
    assert o_err.value.status_code == 503
    assert o_err.value.body["type"] == "server_error"  # type: ignore[index]
    with pytest.raises(openai.InternalServerError) as o_err:
        _openai(routed).chat.completions.create(model="claude-offline-1", messages=MESSAGE)
    assert o_err.value.body["type"] == "server_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as a_err:
        _claude(routed).messages.create(model="claude-offline-1", max_tokens=5, messages=MESSAGE)
    assert a_err.value.status_code == 503
    assert a_err.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_connect_failures_are_retried_generations_never(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    admin = f"http://127.0.0.1:{routed.settings.admin_port}"
    cluster = routed.gateway.router.upstreams["nowhere"].cluster
    before = envoy_stats(admin, f"cluster.{cluster}.upstream_rq_retry$").get(
        f"cluster.{cluster}.upstream_rq_retry", 0
    )
    with pytest.raises(openai.InternalServerError):
        _openai(routed).chat.completions.create(model="offline-2", messages=MESSAGE)
    stats = envoy_stats(admin, f"cluster.{cluster}.upstream_rq_retry$")
    assert stats[f"cluster.{cluster}.upstream_rq_retry"] - before == 2  # connect_retries
    # A provider's error is final, even when the client asks Envoy to retry it: each
    # retry would be another billed generation.
    asks_for_retries = {
        "x-mock-error": "500",
        "x-envoy-retry-on": "5xx,reset,retriable-status-codes",
        "x-envoy-retriable-status-codes": "500",
        "x-envoy-max-retries": "3",
        "x-forwarded-for": "10.0.0.1",
    }
    with pytest.raises(anthropic.InternalServerError):
        _claude(routed, default_headers=asks_for_retries).messages.create(
            model="claude-sonnet-5-5", max_tokens=5, messages=MESSAGE
        )
    assert len(providers["anthropic"].requests()) == 1


def test_client_envoy_headers_are_dropped(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    envoyish = {"x-envoy-upstream-rq-timeout-ms": "1", "x-envoy-custom": "from-client"}
    _claude(routed, default_headers=envoyish).messages.create(
        model="claude-sonnet-5-5", max_tokens=20, messages=MESSAGE
    )
    headers = _only(providers, "anthropic")["headers"]
    assert "x-envoy-custom" not in headers and "from-client" not in str(headers)
    # Nor can a client pick the format of Envoy's own errors (it matches this header).
    spoof = {"x-envoy-original-path": "/v1/chat/completions"}
    with pytest.raises(anthropic.InternalServerError) as err:
        _claude(routed, default_headers=spoof).messages.create(
            model="claude-offline-1", max_tokens=5, messages=MESSAGE
        )
    assert err.value.body["type"] == "error"  # type: ignore[index]


def test_model_details_of_an_unreachable_provider_fail_in_openai_format(routed: Stack) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        _openai(routed).models.retrieve("offline-1")
    assert err.value.status_code == 503
    assert err.value.body["type"] == "server_error"  # type: ignore[index]


def test_envoy_config_rendered_for_other_urls_fails_closed(tmp_path: Path) -> None:
    """Envoy's config rendered with UPSTREAM_OPENAI_URL, the gateway run with an OpenAI
    key instead: the key must not go anywhere; the client is told what is wrong."""
    ports = {
        name: free_port() for name in ("gateway_port", "admin_port", "extproc_port", "mock_port")
    }
    rendered_for = Settings(**ports, upstream_openai_url=f"http://127.0.0.1:{free_port()}")
    running = Settings(**ports, openai_api_key=SecretStr(OAI_KEY))
    # ext_proc runs with `running`; Envoy's bootstrap is rendered from the other router.
    gateway = dataclasses.replace(
        Gateway.load(running, env={}), router=Router.build(rendered_for, env={})
    )
    stack = Stack(gateway, log_dir=tmp_path, envoy_concurrency=1)
    start_logged(stack)
    try:
        with pytest.raises(openai.InternalServerError) as err:
            _openai(stack, DEV_GATEWAY_KEY).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGE
            )
        assert err.value.status_code == 502
        assert "render the Envoy config again" in err.value.message
        # Envoy's catch-all answers in the format of the path's API: OpenAI's here.
        assert err.value.response.json() == {
            "error": {
                "message": NO_CLUSTER_MESSAGE,
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        # The Anthropic side, on the mock in both, still works.
        reply = _claude(stack, DEV_GATEWAY_KEY).messages.create(
            model="claude-sonnet-5-5", max_tokens=20, messages=MESSAGE
        )
        assert reply.content[0].text == "routed fine"  # type: ignore[union-attr]
    finally:
        stack.stop()


# -- the rest of the API ----------------------------------------------------------------


def test_count_tokens_and_models_reach_the_right_provider(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    count = _claude(routed).messages.count_tokens(model="claude-sonnet-5-5", messages=MESSAGE)
    assert count.input_tokens > 0
    record = _only(providers, "anthropic")
    assert record["path"] == "/v1/messages/count_tokens"
    assert record["headers"]["x-api-key"] == ANT_KEY
    providers["anthropic"].clear()

    models = _openai(routed).models.list()
    assert models.data
    record = _only(providers, "openai")
    assert record["path"] == "/v1/models"
    assert record["headers"]["authorization"] == f"Bearer {OAI_KEY}"
    providers["openai"].clear()

    _claude(routed).models.list()
    assert _only(providers, "anthropic")["headers"]["x-api-key"] == ANT_KEY


# -- callers that bring their own provider key -------------------------------------------


def test_caller_bringing_its_own_key_keeps_its_credential_on_both_apis(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    gateway = {"x-gateway-key": CC_KEY}
    client = _claude(routed, CLIENT_OWN_KEY, default_headers=gateway)
    client.messages.create(model="claude-sonnet-5-5", max_tokens=20, messages=MESSAGE)
    headers = _only(providers, "anthropic")["headers"]
    assert headers.get("authorization") == f"Bearer {CLIENT_OWN_KEY}"  # as the SDK sent it
    assert ANT_KEY not in str(headers)
    providers["anthropic"].clear()

    oai = openai.OpenAI(
        base_url=f"{routed.base_url}/v1", api_key="sk-client-openai", default_headers=gateway
    )
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGE)
    headers = _only(providers, "openai")["headers"]
    assert headers["authorization"] == "Bearer sk-client-openai"
    assert OAI_KEY not in str(headers)


def test_claude_code_shaped_request_passes_through_intact(
    routed: Stack, providers: dict[str, MockProvider]
) -> None:
    """What Claude Code sends with its own login: an OAuth bearer token, the gateway key
    in x-gateway-key, beta headers, POST /v1/messages?beta=true, streaming."""
    client = anthropic.Anthropic(
        base_url=routed.base_url,
        auth_token="sk-ant-oat01-client-oauth",
        default_headers={"x-gateway-key": CC_KEY},
        max_retries=0,
    )
    with client.beta.messages.stream(
        model="claude-sonnet-5-5",
        max_tokens=50,
        messages=MESSAGE,
        betas=["oauth-2025-04-20", "interleaved-thinking-2025-05-14"],
        # Claude Code's TypeScript SDK adds ?beta=true; this Python SDK no longer does.
        extra_query={"beta": "true"},
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "routed fine"
    record = _only(providers, "anthropic")
    assert (record["path"], record["query"]) == ("/v1/messages", "beta=true")
    headers = record["headers"]
    assert headers["authorization"] == "Bearer sk-ant-oat01-client-oauth"
    assert "x-api-key" not in headers and ANT_KEY not in str(headers)
    assert headers["anthropic-beta"] == "oauth-2025-04-20,interleaved-thinking-2025-05-14"


def test_logs_name_the_provider_never_a_key(routed: Stack) -> None:
    log = (Path(routed.log_dir or ".") / "extproc.log").read_text()
    assert '"upstream":"anthropic"' in log and '"upstream":"openai"' in log
    assert "provider nowhere -> http://127.0.0.1:" in log
    for secret in SECRETS:
        assert secret not in log
