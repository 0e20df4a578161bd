"""string_replacement end to end: literal and regex replacements in streamed and buffered
responses, and `apply_to_request` rewriting what reaches the provider."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from extproc.stack import Stack
from tests.helpers.policy_stack import (
    APIS,
    anthropic_body,
    ask,
    ask_anthropic,
    ask_openai,
    assert_no_stream_violations,
    chunking,
    clear_mock,
    last_mock_body,
    openai_body,
    policy_stack,
    post,
    post_stream,
)
from tests.helpers.streams import anthropic_text, frames, openai_text, openai_tool_call_deltas

pytestmark = pytest.mark.e2e

# Two entries: the first also rewrites requests; the second only responses, with a small
# hold-back window so text flows on while a match is still being assembled.
CONFIG = r"""
policies:
  - type: string_replacement
    name: codename
    apply_to_request: true
    replacements:
      - {pattern: "Project Falcon", replacement: "Project Phoenix"}
  - type: string_replacement
    name: branding
    holdback: 24
    replacements:
      - {pattern: "Acme Corp", replacement: "Example Inc"}
      - {pattern: '\bv(\d+)\.(\d+)\.(\d+)\b', replacement: 'version \1.\2 (patch \3)', regex: true}
      - {pattern: "the bash tool", replacement: "the shell tool"}
validate_streams: true
"""
SAID = (
    "Ask Acme Corp about v2.10.3 today. Acme Corp said v2.10.3 ships soon; "
    "acme corp, v2.10 and xv2.10.3 stay as they are. Acme Corp!"
)
EXPECTED = (
    "Ask Example Inc about version 2.10 (patch 3) today. Example Inc said version 2.10 "
    "(patch 3) ships soon; acme corp, v2.10 and xv2.10.3 stay as they are. Example Inc!"
)
PROMPT = f"Repeat after me: {SAID}"
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
BODIES = {"anthropic": anthropic_body, "openai": openai_body}

# Tool calls must survive text that is held back and then rewritten (a fixed bug).
TOOL_MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def sr_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "string-replacement", CONFIG)


def _deltas(api: str, raw: bytes) -> list[str]:
    """The text of each delta event, as the mock split it."""
    out = []
    for frame in frames(raw):
        if api == "anthropic":
            if frame.event == "content_block_delta" and frame.data:
                out.append(json.loads(frame.data)["delta"].get("text") or "")
        elif frame.data and frame.data.startswith("{"):
            out.extend(c["delta"].get("content") or "" for c in json.loads(frame.data)["choices"])
    return [d for d in out if d]


@pytest.mark.parametrize("api", APIS)
def test_matches_are_split_across_upstream_deltas(sr_stack: Stack, api: str) -> None:
    """The premise of the streaming tests: no single delta from the mock holds a match."""
    body = {**BODIES[api](PROMPT), "stream": True}
    raw = post(sr_stack, PATHS[api], body, direct=True).content
    deltas = _deltas(api, raw)
    assert "".join(deltas) == SAID
    assert max(len(d) for d in deltas) < len("Acme Corp")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_literal_and_regex_replaced(sr_stack: Stack, api: str, stream: bool) -> None:
    text, calls, stop = ask(sr_stack, api, PROMPT, stream, headers=chunking(f"sr-{api}"))
    assert text == EXPECTED
    assert calls == []
    assert stop == ("end_turn" if api == "anthropic" else "stop")


@pytest.mark.parametrize("api", APIS)
def test_streaming_and_non_streaming_give_identical_text(sr_stack: Stack, api: str) -> None:
    body = BODIES[api](PROMPT)
    resp = post(sr_stack, PATHS[api], body)
    assert resp.status_code == 200
    if api == "anthropic":
        buffered = "".join(b["text"] for b in resp.json()["content"] if b["type"] == "text")
    else:
        buffered = resp.json()["choices"][0]["message"]["content"]
    extract = anthropic_text if api == "anthropic" else openai_text
    streamed = {
        extract(post_stream(sr_stack, PATHS[api], body, chunking(seed))) for seed in range(2)
    }
    streamed.add(extract(post_stream(sr_stack, PATHS[api], body)))
    assert streamed == {buffered} == {EXPECTED}


def test_response_only_entry_leaves_the_request_alone(sr_stack: Stack) -> None:
    clear_mock(sr_stack)
    ask_anthropic(sr_stack, PROMPT, False)
    assert last_mock_body(sr_stack)["messages"][0]["content"] == PROMPT


@pytest.mark.parametrize("stream", [False, True])
def test_apply_to_request_anthropic(sr_stack: Stack, stream: bool) -> None:
    clear_mock(sr_stack)
    res = ask_anthropic(
        sr_stack,
        "Status of Project Falcon?",
        stream,
        system="You work on Project Falcon at Acme Corp.",
    )
    sent = last_mock_body(sr_stack)
    assert sent["system"] == "You work on Project Phoenix at Acme Corp."
    assert sent["messages"] == [{"role": "user", "content": "Status of Project Phoenix?"}]
    # The mock quotes the prompt it received.
    assert res.text == 'This is a mock response to "Status of Project Phoenix?".'


@pytest.mark.parametrize("stream", [False, True])
def test_apply_to_request_openai(sr_stack: Stack, stream: bool) -> None:
    clear_mock(sr_stack)
    messages = [
        {"role": "system", "content": "You work on Project Falcon."},
        {"role": "user", "content": [{"type": "text", "text": "Repeat after me: Project Falcon"}]},
    ]
    res = ask_openai(sr_stack, "", stream, messages=messages)
    sent = last_mock_body(sr_stack)["messages"]
    assert sent == [
        {"role": "system", "content": "You work on Project Phoenix."},
        {"role": "user", "content": [{"type": "text", "text": "Repeat after me: Project Phoenix"}]},
    ]
    assert res.content == "Project Phoenix"


@pytest.mark.parametrize(
    ("api", "stream"), [("anthropic", False), ("anthropic", True), ("openai", False)]
)
def test_text_before_a_tool_call_rewritten(sr_stack: Stack, api: str, stream: bool) -> None:
    text, calls, stop = ask(sr_stack, api, "use bash to run `echo v1.2.3`", stream, tools=True)
    assert text == "I'll use the shell tool."
    # Tool arguments are not response text: the regex leaves them alone.
    assert calls == [("bash", {"command": "echo v1.2.3"})]
    assert stop == ("tool_use" if api == "anthropic" else "tool_calls")


def test_openai_stream_tool_call_survives_rewrite_at_finish(sr_stack: Stack) -> None:
    body = openai_body("use bash to run `echo v1.2.3`", tools=True, model=TOOL_MODEL)
    raw = post(sr_stack, "/v1/chat/completions", {**body, "stream": True}).content
    assert openai_text(raw) == "I'll use the shell tool."
    calls = openai_tool_call_deltas(raw)
    assert calls, "the tool call was dropped"


def test_no_stream_violations_logged(sr_stack: Stack) -> None:
    assert_no_stream_violations(sr_stack)
