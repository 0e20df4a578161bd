"""debug_log end to end: responses unchanged, one log line per event, no bodies logged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from extproc.stack import Stack
from tests.helpers.policy_stack import (
    APIS,
    anthropic_body,
    ask,
    assert_no_stream_violations,
    chunking,
    extproc_log,
    openai_body,
    policy_stack,
    post,
)
from tests.helpers.streams import frames, validate_stream
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

CONFIG = """
policies:
  - type: debug_log
validate_streams: true
"""
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
# Distinctive words that must never reach the log: bodies are off by default.
SECRET_WORDS = ("zebraquokka", "8472aardvark", "lower-case-marmot")
CASES = {
    "text": ("Repeat after me: zebraquokka 8472aardvark", False),
    "tool": ("use bash to run `echo lower-case-marmot`", True),
}
REQUEST_LINE = re.compile(r"extproc\.debug_log request api=(\S+) model=(\S+) (.*)$")
EVENT_LINE = re.compile(r"extproc\.debug_log event model=(\S+) type=(\S+) bytes=(\d+)$")


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "debug-log", CONFIG)


def _lines(st: Stack, model: str) -> list[tuple[str, ...]]:
    """This model's debug_log lines: ("request", api, rest) or ("event", type, bytes)."""
    out: list[tuple[str, ...]] = []
    for line in extproc_log(st).splitlines():
        if (m := REQUEST_LINE.search(line)) and m.group(2) == model:
            out.append(("request", m.group(1), m.group(3)))
        elif (m := EVENT_LINE.search(line)) and m.group(1) == model:
            out.append(("event", m.group(2), m.group(3)))
    return out


def _event_types(api: str, raw: bytes) -> list[str]:
    """The upstream events as debug_log names them."""
    events = [f for f in frames(raw) if f.data is not None]
    if api == "anthropic":
        return [str(f.event) for f in events]
    return ["done" if f.data == "[DONE]" else "chunk" for f in events]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_response_unchanged_and_each_event_logged(
    debug_stack: Stack, api: str, stream: bool, case: str
) -> None:
    prompt, tools = CASES[case]
    model = f"{'claude' if api == 'anthropic' else 'gpt-4o'}-debug-{case}-{int(stream)}"
    make = anthropic_body if api == "anthropic" else openai_body
    body = {**make(prompt, tools=tools, model=model), "stream": stream}
    headers = chunking(f"debug-{model}") if stream else {}
    via = post(debug_stack, PATHS[api], body, headers)
    direct = post(debug_stack, PATHS[api], body, headers, direct=True)
    assert via.status_code == 200
    assert via.content == direct.content
    if stream:
        assert validate_stream(PATHS[api], body, via.content) == []
        expected = _event_types(api, via.content)
    else:
        expected = ["response"]

    wait_for(lambda: len(_lines(debug_stack, model)) >= 1 + len(expected), "debug_log lines")
    lines = _lines(debug_stack, model)
    assert lines[0] == ("request", api, f"stream={stream} messages=1")
    assert [line[0] for line in lines[1:]] == ["event"] * len(expected)
    assert [line[1] for line in lines[1:]] == expected
    for _, kind, size in lines[1:]:
        assert int(size) > 0 or kind == "done"
    # Every event type seen gets its line; for Anthropic that is the whole event grammar.
    if stream and api == "anthropic":
        assert set(expected) >= {
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_sdk_answers_unchanged(debug_stack: Stack, api: str, stream: bool) -> None:
    text, calls, _ = ask(debug_stack, api, CASES["text"][0], stream)
    assert text == "zebraquokka 8472aardvark" and calls == []
    text, calls, _ = ask(debug_stack, api, CASES["tool"][0], stream, tools=True)
    assert calls == [("bash", {"command": "echo lower-case-marmot"})]


def test_bodies_not_logged_by_default(debug_stack: Stack) -> None:
    log = extproc_log(debug_stack)
    assert "extproc.debug_log event" in log
    assert " body=" not in log
    for word in SECRET_WORDS:
        assert word not in log
    # Nor the event payloads' structure.
    assert json.dumps("text_delta") not in log


def test_no_stream_violations_logged(debug_stack: Stack) -> None:
    assert_no_stream_violations(debug_stack)
