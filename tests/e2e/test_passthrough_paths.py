"""Token counting and model listing: forwarded with the gateway key checked and removed,
the provider's credentials injected, and no body policy in the way."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "How many tokens is this sentence?"}]


def test_anthropic_count_tokens(anthropic_client: anthropic.Anthropic, stack: Stack) -> None:
    mock = f"http://127.0.0.1:{stack.settings.mock_port}"
    httpx.delete(f"{mock}/_mock/requests")
    counted = anthropic_client.messages.count_tokens(model="claude-sonnet-5-5", messages=MESSAGES)
    assert counted.input_tokens > 0
    (seen,) = httpx.get(f"{mock}/_mock/requests").json()
    assert seen["path"] == "/v1/messages/count_tokens" and seen["body"]["messages"] == MESSAGES
    assert (
        DEV_GATEWAY_KEY not in str(seen["headers"]) and "x-gateway-upstream" not in seen["headers"]
    )


def test_model_lists_in_each_format(
    anthropic_client: anthropic.Anthropic, openai_client: openai.OpenAI
) -> None:
    claude_models = [m.id for m in anthropic_client.models.list()]
    assert claude_models and all(m.startswith("claude") for m in claude_models)
    assert [m.id for m in openai_client.models.list()]


def test_passthrough_paths_need_the_gateway_key(base_url: str) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model="claude-sonnet-5-5", messages=MESSAGES)
    # /v1/models is shared: the SDK's anthropic-version header makes the 401 Anthropic's.
    with pytest.raises(anthropic.AuthenticationError) as a_err:
        client.models.list()
    assert a_err.value.body["type"] == "error"  # type: ignore[index]
    assert a_err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    oai = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        oai.models.list()


def test_wrong_method_on_passthrough_path(http: httpx.Client) -> None:
    resp = http.get("/v1/messages/count_tokens", headers={"x-api-key": DEV_GATEWAY_KEY})
    assert resp.status_code == 405 and resp.json()["error"]["type"] == "invalid_request_error"
