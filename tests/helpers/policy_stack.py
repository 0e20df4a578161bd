"""Stacks for the e2e tests of policies (tests/e2e/test_policy_*.py).

Each policy module starts its own module-scoped stack with `policy_stack` (a policy YAML
with `validate_streams: true`), talks to it through the official SDKs with `ask_anthropic`
/ `ask_openai`, and ends with `assert_no_stream_violations`. The SDK clients use a
recording transport, so every stream an SDK consumed is also checked byte for byte with
`validate_stream`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.responses_mock import is_typed
from tests.helpers.stack import running_stack
from tests.helpers.streams import validate_responses_stream, validate_stream

A_MODEL = "claude-sonnet-4-6"
O_MODEL = "gpt-4o-mini"
KEY_HEADERS = {"x-api-key": DEV_GATEWAY_KEY}
# A tool_call_judge's `judge:` in a policy file: the stack's mock, quick to give up.
MOCK_JUDGE = (
    '{base_url: "http://127.0.0.1:${MOCK_LLM_PORT}/v1", model: judge-mock, timeout_s: 2, '
    "max_retries: 0}"
)


def chunking(seed: int | str) -> dict[str, str]:
    """Headers making the mock split its bytes at random places (one write per piece)."""
    return {"x-mock-chunking": f"random:{seed}", "x-mock-chunk-delay-ms": "1"}


def tool(name: str, prop: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"The {name} tool",
        "input_schema": {
            "type": "object",
            "properties": {prop: {"type": "string"}},
            "required": [prop],
        },
    }


A_TOOLS = [tool("bash", "command"), tool("get_weather", "city"), tool("delete_file", "path")]
O_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
    for t in A_TOOLS
]


# -- stacks --------------------------------------------------------------------------


def policy_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: str
) -> Iterator[Stack]:
    """A whole stack running `config` (a policy YAML); use from a module fixture."""
    assert "validate_streams: true" in config
    log_dir = tmp_path_factory.mktemp(name)
    path = log_dir / "policy.yaml"
    path.write_text(config)
    with running_stack(log_dir, policy_config=str(path)) as st:
        yield st


def extproc_log(st: Stack) -> str:
    return (Path(st.log_dir or ".") / "extproc.log").read_text(errors="replace")


def assert_no_stream_violations(st: Stack) -> None:
    """No "stream violation" in the extproc log: every stream the module produced was valid."""
    text = extproc_log(st)
    assert "validating streams" in text
    assert [line for line in text.splitlines() if "stream violation" in line] == []


def mock_url(st: Stack) -> str:
    return f"http://127.0.0.1:{st.settings.mock_port}"


def clear_mock(st: Stack) -> None:
    httpx.delete(f"{mock_url(st)}/_mock/requests", timeout=5).raise_for_status()


def mock_requests(st: Stack) -> list[dict[str, Any]]:
    """The requests the mock LLM received (recorded in order, at most the last 100)."""
    resp = httpx.get(f"{mock_url(st)}/_mock/requests", timeout=5)
    resp.raise_for_status()
    return list(resp.json())


def last_mock_body(st: Stack) -> dict[str, Any]:
    records = mock_requests(st)
    assert records, "no request reached the mock"
    return dict(records[-1]["body"])


def post(
    st: Stack,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    direct: bool = False,
) -> httpx.Response:
    """Raw POST through the gateway, or straight to the mock with `direct`."""
    base = mock_url(st) if direct else st.base_url
    return httpx.post(
        f"{base}{path}", json=body, headers={**KEY_HEADERS, **(headers or {})}, timeout=30
    )


def post_stream(
    st: Stack, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> bytes:
    """A streamed response's raw bytes through the gateway, checked by the validator."""
    body = {**body, "stream": True}
    resp = post(st, path, body, headers)
    assert resp.status_code == 200, resp.text
    assert validate_stream(path, body, resp.content) == []
    return resp.content


# -- SDK clients -----------------------------------------------------------------------


class RecordingTransport(httpx2.BaseTransport):
    """Keeps every response body as received, so a stream the SDK parsed can also be
    validated. Bodies are read whole before the SDK sees them: an SDK may stop reading
    at the terminal event, and the validator needs every byte. (Both SDKs are built on
    `httpx2`, not `httpx`.)"""

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.bodies: list[tuple[httpx2.Response, bytes]] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        try:
            data = b"".join(response.stream)  # type: ignore[arg-type]
        finally:
            response.close()
        self.bodies.append((response, data))
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx2.ByteStream(data),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


def _validated(transport: RecordingTransport, path: str, body: dict[str, Any]) -> bytes:
    assert len(transport.bodies) == 1, "expected exactly one HTTP exchange"
    response, raw = transport.bodies[0]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    assert validate_stream(path, {**body, "stream": True}, raw) == []
    return raw


def anthropic_client(
    st: Stack, headers: dict[str, str] | None = None
) -> tuple[anthropic.Anthropic, RecordingTransport]:
    transport = RecordingTransport()
    client = anthropic.Anthropic(
        base_url=st.base_url,
        api_key=DEV_GATEWAY_KEY,
        max_retries=0,
        default_headers=headers or {},
        http_client=httpx2.Client(transport=transport, timeout=30),
    )
    return client, transport


def openai_client(
    st: Stack, headers: dict[str, str] | None = None
) -> tuple[openai.OpenAI, RecordingTransport]:
    transport = RecordingTransport()
    client = openai.OpenAI(
        base_url=f"{st.base_url}/v1",
        api_key=DEV_GATEWAY_KEY,
        max_retries=0,
        default_headers=headers or {},
        http_client=httpx2.Client(transport=transport, timeout=30),
    )
    return client, transport


@dataclass
class AnthropicResult:
    message: Any  # anthropic.types.Message
    raw: bytes | None  # the validated stream bytes when streaming

    @property
    def texts(self) -> list[str]:
        return [b.text for b in self.message.content if b.type == "text"]

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def tool_uses(self) -> list[tuple[str, dict[str, Any]]]:
        return [(b.name, b.input) for b in self.message.content if b.type == "tool_use"]

    @property
    def kinds(self) -> list[str]:
        return [b.type for b in self.message.content]

    @property
    def stop_reason(self) -> str:
        return str(self.message.stop_reason)


def anthropic_body(
    prompt: str, *, tools: bool = False, max_tokens: int = 1000, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": A_MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }
    if tools:
        body["tools"] = A_TOOLS
    return body


def openai_body(prompt: str, *, tools: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": O_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }
    if tools:
        body["tools"] = O_TOOLS
    return body


def ask_anthropic(
    st: Stack,
    prompt: str,
    stream: bool,
    *,
    tools: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> AnthropicResult:
    """One request with the Anthropic SDK: `messages.stream` or `messages.create`."""
    body = anthropic_body(prompt, tools=tools, **extra)
    client, transport = anthropic_client(st, headers)
    with client:
        if not stream:
            return AnthropicResult(client.messages.create(**body), None)
        with client.messages.stream(**body) as s:
            message = s.get_final_message()
    return AnthropicResult(message, _validated(transport, "/v1/messages", body))


@dataclass
class OpenAIResult:
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # name + parsed args
    finish_reason: str = ""
    raw: bytes | None = None


def ask_openai(
    st: Stack,
    prompt: str,
    stream: bool,
    *,
    tools: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> OpenAIResult:
    """One request with the OpenAI SDK; a stream is accumulated as the SDK delivers it."""
    body = openai_body(prompt, tools=tools, **extra)
    client, transport = openai_client(st, headers)
    with client:
        if not stream:
            choice = client.chat.completions.create(**body).choices[0]
            calls = [
                {"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
            return OpenAIResult(choice.message.content or "", calls, str(choice.finish_reason))
        content, finish = "", ""
        acc: dict[int, dict[str, str]] = {}
        for chunk in client.chat.completions.create(stream=True, **body):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    entry = acc.setdefault(tc.index, {"name": "", "arguments": ""})
                    entry["name"] += (tc.function and tc.function.name) or ""
                    entry["arguments"] += (tc.function and tc.function.arguments) or ""
                finish = choice.finish_reason or finish
    raw = _validated(transport, "/v1/chat/completions", body)
    calls = [
        {"name": acc[i]["name"], "arguments": json.loads(acc[i]["arguments"])} for i in sorted(acc)
    ]
    return OpenAIResult(content, calls, finish, raw)


def ask(
    st: Stack, api: str, prompt: str, stream: bool, **kwargs: Any
) -> tuple[str, list[tuple[str, dict[str, Any]]], str]:
    """API-neutral view of one answer: (text, [(tool name, input)], stop/finish reason)."""
    if api == "anthropic":
        a = ask_anthropic(st, prompt, stream, **kwargs)
        return a.text, a.tool_uses, a.stop_reason
    o = ask_openai(st, prompt, stream, **kwargs)
    return o.content, [(c["name"], c["arguments"]) for c in o.tool_calls], o.finish_reason


APIS = ["anthropic", "openai"]


# -- OpenAI Responses API ------------------------------------------------------------------

R_TOOLS = [
    {
        "type": "function",
        "name": t["name"],
        "description": t["description"],
        "parameters": t["input_schema"],
        "strict": False,
    }
    for t in A_TOOLS
]


class ExchangeRecorder(RecordingTransport):
    """A RecordingTransport that also keeps every request the SDK sent (body read), so a
    test can replay the exact bytes straight to the mock."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx2.Request] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        return super().handle_request(request)


def responses_client(
    st: Stack, headers: dict[str, str] | None = None, api_key: str = DEV_GATEWAY_KEY
) -> tuple[openai.OpenAI, ExchangeRecorder]:
    transport = ExchangeRecorder()
    client = openai.OpenAI(
        base_url=f"{st.base_url}/v1",
        api_key=api_key,
        max_retries=0,
        default_headers=headers or {},
        http_client=httpx2.Client(transport=transport, timeout=30),
    )
    return client, transport


def responses_body(prompt: str, *, tools: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": O_MODEL, "input": prompt, **extra}
    if tools:
        body["tools"] = R_TOOLS
    return body


def assert_sdk_events(events: list[Any]) -> None:
    """Every event the SDK yielded is its own typed class, numbered 0..n-1, and the last
    is `response.completed`."""
    assert events, "the SDK yielded no event"
    untyped = [e.type for e in events if not is_typed(e)]
    assert untyped == [], f"events the SDK did not type: {untyped}"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"


def validated_responses_stream(transport: RecordingTransport, body: dict[str, Any]) -> bytes:
    """The one streamed exchange's bytes, checked against the Responses stream contract."""
    assert len(transport.bodies) == 1, "expected exactly one HTTP exchange"
    response, raw = transport.bodies[0]
    assert response.status_code == 200, raw[:500]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    assert validate_responses_stream(raw, body) == []
    return raw


@dataclass
class ResponsesResult:
    response: Any  # openai.types.responses.Response: the SDK's final object
    raw: bytes | None  # the validated stream bytes when streaming
    events: list[Any]  # what the SDK's stream yielded (empty when not streaming)
    sent: bytes  # the request body the SDK sent
    received: bytes  # the response body as it arrived (JSON or SSE)

    @property
    def text(self) -> str:
        return str(self.response.output_text)

    @property
    def kinds(self) -> list[str]:
        return [item.type for item in self.response.output]

    @property
    def messages(self) -> list[str]:
        """The text of each message item, in output order."""
        return [
            "".join(part.text for part in item.content if part.type == "output_text")
            for item in self.response.output
            if item.type == "message"
        ]

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, parsed arguments) of each function_call item, in output order."""
        return [
            (item.name, json.loads(item.arguments))
            for item in self.response.output
            if item.type == "function_call"
        ]


def ask_responses(
    st: Stack,
    prompt: str,
    stream: bool,
    *,
    tools: bool = False,
    headers: dict[str, str] | None = None,
    api_key: str = DEV_GATEWAY_KEY,
    **extra: Any,
) -> ResponsesResult:
    """One Responses API request with the SDK: `responses.stream` (every event typed and
    numbered, the bytes validated) or `responses.create`."""
    body = responses_body(prompt, tools=tools, **extra)
    client, transport = responses_client(st, headers, api_key)
    with client:
        if not stream:
            response = client.responses.create(**body)
            sent, received = transport.requests[0].content, transport.bodies[0][1]
            return ResponsesResult(response, None, [], sent, received)
        with client.responses.stream(**body) as s:
            events = list(s)
            response = s.get_final_response()
    assert_sdk_events(events)
    raw = validated_responses_stream(transport, body)
    return ResponsesResult(response, raw, events, transport.requests[0].content, raw)
