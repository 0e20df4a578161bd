"""Exact bytes on the wire: what the gateway sends is what the provider sent."""

from __future__ import annotations

import json

import httpx
import pytest

from extproc.config import DEV_GATEWAY_KEY
from tests.helpers.streams import frames, validate_stream

pytestmark = pytest.mark.e2e

AUTH = {"x-api-key": DEV_GATEWAY_KEY, "anthropic-version": "2023-06-01"}
TOOL_A = {
    "name": "bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}
TOOL_O = {"type": "function", "function": {"name": "bash", "parameters": TOOL_A["input_schema"]}}

REQUESTS = {
    "anthropic-text": (
        "/v1/messages",
        {
            "model": "claude-sonnet-5-5",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "Count to 5"}],
        },
    ),
    "anthropic-tool-thinking": (
        "/v1/messages",
        {
            "model": "claude-sonnet-5-5",
            "max_tokens": 2000,
            "stream": True,
            "tools": [TOOL_A],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "use bash to run `du -sh ~`"}],
        },
    ),
    "anthropic-json": (
        "/v1/messages",
        {
            "model": "claude-sonnet-5-5",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "unicode"}],
        },
    ),
    "openai-text-usage": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Count to 5"}],
        },
    ),
    "openai-tool": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "tools": [TOOL_O],
            "messages": [{"role": "user", "content": "use bash to run `uptime`"}],
        },
    ),
    "openai-json": (
        "/v1/chat/completions",
        {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "Count to 2"}]},
    ),
}


def _post(client: httpx.Client, url: str, path: str, body: dict, headers: dict) -> httpx.Response:
    return client.post(
        f"{url}{path}",
        content=json.dumps(body),
        headers={"content-type": "application/json", **AUTH, **headers},
    )


@pytest.mark.parametrize("name", sorted(REQUESTS))
@pytest.mark.parametrize(
    "mock_headers",
    [
        {},
        {"x-mock-chunking": "random:11", "x-mock-chunk-delay-ms": "1"},
        {"x-mock-line-ending": "crlf", "x-mock-chunking": "random:4", "x-mock-chunk-delay-ms": "1"},
        {"x-mock-line-ending": "cr"},
    ],
    ids=["whole", "random", "crlf-random", "cr"],
)
def test_byte_identical_to_provider(
    http: httpx.Client, base_url: str, mock_url: str, name: str, mock_headers: dict
) -> None:
    path, body = REQUESTS[name]
    direct = _post(http, mock_url, path, body, mock_headers)
    via = _post(http, base_url, path, body, mock_headers)
    assert direct.status_code == via.status_code == 200
    assert via.headers["content-type"] == direct.headers["content-type"]
    assert via.content == direct.content
    if body.get("stream"):
        assert validate_stream(path, body, via.content) == []


def _event_names(body: bytes) -> list[str]:
    return [frame.event for frame in frames(body) if frame.event is not None]


def test_anthropic_event_sequence(http: httpx.Client, base_url: str) -> None:
    path, body = REQUESTS["anthropic-text"]
    names = _event_names(_post(http, base_url, path, body, {}).content)
    deltas = names.count("content_block_delta")
    assert deltas >= 2
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_openai_stream_ends_with_done(http: httpx.Client, base_url: str) -> None:
    path, body = REQUESTS["openai-text-usage"]
    resp = _post(http, base_url, path, body, {})
    assert resp.content.endswith(b"data: [DONE]\n\n")
    assert resp.content.count(b"[DONE]") == 1
    datas = [frame.data for frame in frames(resp.content)]
    assert datas[-1] == "[DONE]" and datas.count("[DONE]") == 1


def test_gateway_key_never_reaches_upstream(
    http: httpx.Client, base_url: str, mock_url: str
) -> None:
    http.delete(f"{mock_url}/_mock/requests")
    path, body = REQUESTS["openai-json"]
    _post(
        http,
        base_url,
        path,
        body,
        {
            "authorization": f"Bearer {DEV_GATEWAY_KEY}",
            "x-gateway-upstream": "openai",
            "accept-encoding": "gzip",
        },
    )
    recorded = http.get(f"{mock_url}/_mock/requests").json()
    assert len(recorded) == 1
    sent = recorded[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"] == body
    headers = sent["headers"]
    assert DEV_GATEWAY_KEY not in json.dumps(headers)
    assert "x-api-key" not in headers and "authorization" not in headers
    assert "x-gateway-upstream" not in headers
    assert "gzip" not in headers.get("accept-encoding", "")
    # Anthropic's own headers are forwarded.
    assert headers.get("anthropic-version") == "2023-06-01"
