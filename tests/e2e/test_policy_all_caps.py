"""all_caps end to end: response text upper-cased as it streams, tool calls untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.mock_llm.scenario import UNICODE_REPLY
from extproc.stack import Stack
from tests.helpers.policy_stack import (
    APIS,
    anthropic_body,
    ask,
    ask_anthropic,
    assert_no_stream_violations,
    chunking,
    openai_body,
    policy_stack,
    post,
    post_stream,
)
from tests.helpers.streams import (
    anthropic_text,
    openai_text,
    openai_tool_call_deltas,
    validate_stream,
)

pytestmark = pytest.mark.e2e

CONFIG = """
policies:
  - type: all_caps
validate_streams: true
"""


@pytest.fixture(scope="module")
def caps_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "all-caps", CONFIG)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_text_upper_cased(caps_stack: Stack, api: str, stream: bool) -> None:
    prompt = "Repeat after me: Hello there, mixed Case 123!"
    text, calls, stop = ask(caps_stack, api, prompt, stream, headers=chunking(1))
    assert text == "HELLO THERE, MIXED CASE 123!"
    assert calls == []
    assert stop == ("end_turn" if api == "anthropic" else "stop")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_multibyte_text_upper_cased(caps_stack: Stack, api: str, stream: bool) -> None:
    # "héllo wörld — 你好 🌍 ✓": 2-, 3- and 4-byte UTF-8 characters, split by random chunking.
    text, _, _ = ask(caps_stack, api, "Say something in unicode", stream, headers=chunking(2))
    assert text == UNICODE_REPLY.upper() == "HÉLLO WÖRLD — 你好 🌍 ✓"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_text_that_grows_when_upper_cased(caps_stack: Stack, api: str, stream: bool) -> None:
    # "ß" becomes "SS": the rewritten text is longer than the original.
    text, _, _ = ask(caps_stack, api, "Repeat after me: die Straße, groß", stream)
    assert text == "DIE STRASSE, GROSS"


TOOL_PROMPT = "use bash to run `echo lower-case Args`"
# The model name of the request that reproduces the dropped-tool-call bug below; its
# stream violation is expected in the log, any other is not.
# Tool calls must survive text that is held back and then rewritten (a fixed bug).
TOOL_MODEL = "gpt-4o-mini"


@pytest.mark.parametrize(
    ("api", "stream"), [("anthropic", False), ("anthropic", True), ("openai", False)]
)
def test_tool_call_arguments_untouched(caps_stack: Stack, api: str, stream: bool) -> None:
    text, calls, stop = ask(caps_stack, api, TOOL_PROMPT, stream, tools=True)
    assert text == "I'LL USE THE BASH TOOL."
    assert calls == [("bash", {"command": "echo lower-case Args"})]
    assert stop == ("tool_use" if api == "anthropic" else "tool_calls")


def test_openai_stream_tool_call_survives_rewritten_text(caps_stack: Stack) -> None:
    body = openai_body(TOOL_PROMPT, tools=True, model=TOOL_MODEL)
    raw = post(caps_stack, "/v1/chat/completions", {**body, "stream": True}).content
    assert openai_text(raw) == "I'LL USE THE BASH TOOL."
    calls = openai_tool_call_deltas(raw)
    assert calls, "the tool call was dropped"
    assert validate_stream("/v1/chat/completions", {**body, "stream": True}, raw) == []


def test_anthropic_blocks_keep_their_order(caps_stack: Stack) -> None:
    res = ask_anthropic(caps_stack, "use bash to run `ls` and get_weather", True, tools=True)
    assert res.kinds == ["text", "tool_use", "tool_use"]
    assert res.texts == ["I'LL USE THE BASH AND GET_WEATHER TOOLS."]
    assert res.tool_uses == [("bash", {"command": "ls"}), ("get_weather", {"city": "example city"})]


@pytest.mark.parametrize("seed", range(3))
def test_raw_stream_text_upper_cased_under_random_chunking(caps_stack: Stack, seed: int) -> None:
    prompt = "Repeat after me: ünïcödé ǆ ﬁ — every delta upper-cased"
    expected = "ünïcödé ǆ ﬁ — every delta upper-cased".upper()
    raw = post_stream(caps_stack, "/v1/messages", anthropic_body(prompt), chunking(seed))
    assert anthropic_text(raw) == expected
    raw = post_stream(caps_stack, "/v1/chat/completions", openai_body(prompt), chunking(seed))
    assert openai_text(raw) == expected


def test_no_stream_violations_logged(caps_stack: Stack) -> None:
    assert_no_stream_violations(caps_stack)
