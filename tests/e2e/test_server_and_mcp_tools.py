"""tool_filter's `server_tools` and `mcp_servers` on all three APIs, end to end.

Tools that run at the provider (web search, code execution, MCP servers it connects to)
never come back as calls the gateway could block: a request declaring a refused one is
refused whole, with a 403 in the API's own format (the SDKs raise
PermissionDeniedError), before it reaches the provider. MCP servers are matched by URL
or name, and a refusal names the server, never its URL (it may carry a token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from extproc.stack import Stack
from tests.helpers.policy_stack import (
    A_MODEL,
    O_MODEL,
    anthropic_client,
    assert_no_stream_violations,
    assert_sdk_events,
    clear_mock,
    mock_requests,
    openai_client,
    policy_stack,
    responses_client,
)

pytestmark = pytest.mark.e2e

CONFIG = """
policies:
  - type: tool_filter
    server_tools: {deny: ["web_search*"]}
    mcp_servers: {allow: ["https://mcp.allowed.example/*"]}
validate_streams: true
"""
EVIL_URL = "https://evil.example/sse?token=evil-secret-token"
ALLOWED_URL = "https://mcp.allowed.example/sse"
MCP_BETA = ["mcp-client-2025-04-04"]
MESSAGES: list[Any] = [{"role": "user", "content": "Count to 3"}]


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "server-tools", CONFIG)


def _refused(err: anthropic.APIStatusError | openai.APIStatusError, st: Stack) -> str:
    """The refusal's message, after checking it is a 403 that reached no provider."""
    assert err.status_code == 403
    assert mock_requests(st) == []
    text = json.dumps(err.body)
    assert "evil.example" not in text and "evil-secret-token" not in text
    body: Any = err.body
    # Anthropic's body is the whole document; the openai SDK's is the inner error.
    return str(body["error"]["message"] if "error" in body else body["message"])


# -- Anthropic Messages ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_web_search_refused(ts: Stack, stream: bool) -> None:
    clear_mock(ts)
    client, _ = anthropic_client(ts)
    tools: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    with client, pytest.raises(anthropic.PermissionDeniedError) as info:
        if stream:
            with client.messages.stream(
                model=A_MODEL, max_tokens=50, messages=MESSAGES, tools=tools
            ) as s:
                s.get_final_message()
        else:
            client.messages.create(model=A_MODEL, max_tokens=50, messages=MESSAGES, tools=tools)
    message = _refused(info.value, ts)
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert message == "server tool 'web_search_20250305' is not allowed here: on the deny list"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_mcp_server_refused_by_name_not_url(ts: Stack, stream: bool) -> None:
    clear_mock(ts)
    client, _ = anthropic_client(ts)
    servers: Any = [{"type": "url", "url": EVIL_URL, "name": "evil"}]
    with client, pytest.raises(anthropic.PermissionDeniedError) as info:
        kwargs: dict[str, Any] = {
            "model": A_MODEL,
            "max_tokens": 50,
            "messages": MESSAGES,
            "mcp_servers": servers,
            "betas": MCP_BETA,
        }
        if stream:
            with client.beta.messages.stream(**kwargs) as s:
                s.get_final_message()
        else:
            client.beta.messages.create(**kwargs)
    message = _refused(info.value, ts)
    assert message == "MCP server 'evil' is not allowed here: not on the allow list"


def test_anthropic_allowed_server_tools_and_mcp_servers_pass(ts: Stack) -> None:
    clear_mock(ts)
    client, _ = anthropic_client(ts)
    tools: Any = [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}},
    ]
    servers: Any = [{"type": "url", "url": ALLOWED_URL, "name": "good"}]
    with client:
        msg = client.beta.messages.create(
            model=A_MODEL,
            max_tokens=50,
            messages=MESSAGES,
            tools=tools,
            mcp_servers=servers,
            betas=MCP_BETA,
        )
    assert msg.content[0].type == "text" and msg.content[0].text == "1, 2, 3"
    (record,) = mock_requests(ts)
    assert record["body"]["mcp_servers"] == servers and record["body"]["tools"] == tools


# -- OpenAI Responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool,message",
    [
        ({"type": "web_search"}, "server tool 'web_search' is not allowed here: on the deny list"),
        (
            {"type": "web_search_preview", "search_context_size": "low"},
            "server tool 'web_search_preview' is not allowed here: on the deny list",
        ),
        (
            {"type": "mcp", "server_label": "x", "server_url": "https://evil.example/mcp"},
            "MCP server 'x' is not allowed here: not on the allow list",
        ),
        (
            {"type": "mcp", "server_label": "gmail", "connector_id": "connector_gmail"},
            "MCP server 'gmail' is not allowed here: not on the allow list",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_responses_server_tool_or_mcp_refused(
    ts: Stack, tool: dict[str, Any], message: str, stream: bool
) -> None:
    clear_mock(ts)
    client, _ = responses_client(ts)
    tools: Any = [tool]
    with client, pytest.raises(openai.PermissionDeniedError) as info:
        if stream:
            with client.responses.stream(model=O_MODEL, input="Count to 3", tools=tools) as s:
                s.get_final_response()
        else:
            client.responses.create(model=O_MODEL, input="Count to 3", tools=tools)
    assert _refused(info.value, ts) == message
    assert info.value.type == "permission_error"


def test_responses_compact_declaring_web_search_refused(ts: Stack) -> None:
    """`compact` runs the request policies: the same request rules hold there."""
    clear_mock(ts)
    client, _ = responses_client(ts)
    with client, pytest.raises(openai.PermissionDeniedError) as info:
        client.responses.compact(
            model=O_MODEL, input="Count to 3", extra_body={"tools": [{"type": "web_search"}]}
        )
    assert "web_search" in _refused(info.value, ts)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_allowed_tools_pass(ts: Stack, stream: bool) -> None:
    clear_mock(ts)
    client, transport = responses_client(ts)
    tools: Any = [
        {"type": "mcp", "server_label": "good", "server_url": "https://mcp.allowed.example/mcp"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
    ]
    got: Any
    with client:
        if stream:
            with client.responses.stream(model=O_MODEL, input="Count to 3", tools=tools) as s:
                events = list(s)
                got = s.get_final_response()
            assert_sdk_events(events)
        else:
            got = client.responses.create(model=O_MODEL, input="Count to 3", tools=tools)
    assert got.output_text == "1, 2, 3"
    (record,) = mock_requests(ts)
    assert record["body"]["tools"] == tools
    assert transport.bodies[0][0].status_code == 200


# -- OpenAI chat completions ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_chat_web_search_options_refused(ts: Stack, stream: bool) -> None:
    clear_mock(ts)
    client, _ = openai_client(ts)
    with client, pytest.raises(openai.PermissionDeniedError) as info:
        if stream:
            list(
                client.chat.completions.create(
                    model="gpt-4o-search-preview",
                    messages=MESSAGES,
                    web_search_options={},
                    stream=True,
                )
            )
        else:
            client.chat.completions.create(
                model="gpt-4o-search-preview", messages=MESSAGES, web_search_options={}
            )
    assert _refused(info.value, ts) == (
        "server tool 'web_search' is not allowed here: on the deny list"
    )


def test_chat_without_server_tools_passes(ts: Stack) -> None:
    clear_mock(ts)
    client, _ = openai_client(ts)
    with client:
        got = client.chat.completions.create(model=O_MODEL, messages=MESSAGES)
    assert got.choices[0].message.content == "1, 2, 3"


# -- the allow-list is over URLs --------------------------------------------------------------


def test_anthropic_mcp_name_cannot_vouch_for_its_url(ts: Stack) -> None:
    """The name is the caller's to choose: a server at a URL off the allow-list must stay
    refused even when its name looks like an allowed URL."""
    clear_mock(ts)
    client, _ = anthropic_client(ts)
    servers: Any = [{"type": "url", "url": EVIL_URL, "name": ALLOWED_URL}]
    with client, pytest.raises(anthropic.PermissionDeniedError) as info:
        client.beta.messages.create(
            model=A_MODEL, max_tokens=50, messages=MESSAGES, mcp_servers=servers, betas=MCP_BETA
        )
    _refused(info.value, ts)


def test_responses_mcp_label_cannot_vouch_for_its_url(ts: Stack) -> None:
    clear_mock(ts)
    client, _ = responses_client(ts)
    tools: Any = [
        {"type": "mcp", "server_label": "https://mcp.allowed.example/x", "server_url": EVIL_URL}
    ]
    with client, pytest.raises(openai.PermissionDeniedError) as info:
        client.responses.create(model=O_MODEL, input="Count to 3", tools=tools)
    _refused(info.value, ts)


def test_no_stream_violations_logged(ts: Stack) -> None:
    assert_no_stream_violations(ts)
