"""noop end to end: the gateway hands back exactly what the model sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.stack import Stack
from tests.helpers.policy_stack import (
    APIS,
    anthropic_body,
    ask,
    assert_no_stream_violations,
    chunking,
    openai_body,
    policy_stack,
    post,
)
from tests.helpers.streams import validate_stream

pytestmark = pytest.mark.e2e

CONFIG = """
policies:
  - type: noop
validate_streams: true
"""
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
CASES = {
    # name -> (prompt, whether the request offers tools)
    "text": ("Repeat after me: Plain text, passed through as is.", False),
    "tool": ("use bash to run `ls -la /tmp`", True),
}


@pytest.fixture(scope="module")
def noop_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "noop", CONFIG)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_bytes_identical_to_the_mock(noop_stack: Stack, api: str, stream: bool, case: str) -> None:
    prompt, tools = CASES[case]
    make = anthropic_body if api == "anthropic" else openai_body
    body = {**make(prompt, tools=tools), "stream": stream}
    headers = chunking(f"noop-{api}-{case}") if stream else {}
    via = post(noop_stack, PATHS[api], body, headers)
    direct = post(noop_stack, PATHS[api], body, headers, direct=True)
    assert via.status_code == direct.status_code == 200
    assert via.content == direct.content
    if stream:
        assert validate_stream(PATHS[api], body, via.content) == []


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_sdk_sees_text_intact(noop_stack: Stack, api: str, stream: bool) -> None:
    text, calls, stop = ask(noop_stack, api, CASES["text"][0], stream, headers=chunking(5))
    assert text == "Plain text, passed through as is."
    assert calls == []
    assert stop == ("end_turn" if api == "anthropic" else "stop")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_sdk_sees_tool_call_intact(noop_stack: Stack, api: str, stream: bool) -> None:
    text, calls, stop = ask(noop_stack, api, CASES["tool"][0], stream, tools=True)
    assert text == "I'll use the bash tool."
    assert calls == [("bash", {"command": "ls -la /tmp"})]
    assert stop == ("tool_use" if api == "anthropic" else "tool_calls")


def test_no_stream_violations_logged(noop_stack: Stack) -> None:
    assert_no_stream_violations(noop_stack)
