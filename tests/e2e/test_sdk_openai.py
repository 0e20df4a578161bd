"""The official openai SDK through the real Envoy + ext_proc, streaming and not."""

from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.e2e

MODELS = ["claude-sonnet-5-5", "gpt-4o-mini"]
BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", MODELS)
def test_non_streaming_count(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(
        model=model, max_tokens=50, messages=_ask("Count to 3")
    )
    choice = resp.choices[0]
    assert choice.message.content == "1, 2, 3"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streaming_count_with_usage(openai_client: openai.OpenAI, model: str) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=model,
            max_tokens=50,
            messages=_ask("Count to 3"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "1, 2, 3"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls(openai_client: openai.OpenAI, stream: bool) -> None:
    kwargs = {
        "model": "gpt-4o-mini",
        "tools": [BASH_TOOL],
        "messages": _ask("Please use bash to run `echo hi`"),
    }
    if not stream:
        resp = openai_client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        choice = resp.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].function.name == "bash"
        assert json.loads(calls[0].function.arguments) == {"command": "echo hi"}
        return
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in openai_client.chat.completions.create(stream=True, **kwargs):  # type: ignore[call-overload]
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for tc in choice.delta.tool_calls or []:
            if tc.function and tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + (
                (tc.function and tc.function.arguments) or ""
            )
        finish = choice.finish_reason or finish
    assert names == {0: "bash"}
    assert json.loads(args[0]) == {"command": "echo hi"}
    assert finish == "tool_calls"


def test_unicode_through_random_chunking(openai_client: openai.OpenAI) -> None:
    chunks = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=_ask("unicode please"),
        stream=True,
        extra_headers={"x-mock-chunking": "random:5", "x-mock-chunk-delay-ms": "1"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "héllo wörld — 你好 🌍 ✓"


def test_rate_limit_reaches_client_with_retry_after(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=_ask("hi"), extra_headers={"x-mock-error": "429"}
        )
    assert info.value.response.headers.get("retry-after") == "7"


def test_bad_gateway_key_is_authentication_error(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=_ask("hi"))
    assert info.value.status_code == 401
    assert "sk-wrong" not in str(info.value)
