"""The official anthropic SDK through the real Envoy + ext_proc, streaming and not."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-5-5"
BASH_TOOL = {
    "name": "bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_non_streaming_count(anthropic_client: anthropic.Anthropic) -> None:
    msg = anthropic_client.messages.create(model=MODEL, max_tokens=50, messages=_ask("Count to 3"))
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "1, 2, 3"
    assert msg.stop_reason == "end_turn"
    assert msg.model == MODEL
    assert msg.usage.output_tokens > 0


def test_streaming_count_event_sequence(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=50, messages=_ask("Count to 3")
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "1, 2, 3"
    assert final.stop_reason == "end_turn"
    assert types.count("message_start") == 1 and types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert "content_block_delta" in types and types.count("message_delta") == 1


def test_streaming_raw_events(anthropic_client: anthropic.Anthropic) -> None:
    stream = anthropic_client.messages.create(
        model=MODEL, max_tokens=50, messages=_ask("Count to 3"), stream=True
    )
    text = "".join(
        e.delta.text
        for e in stream
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "1, 2, 3"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(anthropic_client: anthropic.Anthropic, stream: bool) -> None:
    kwargs = {
        "model": MODEL,
        "max_tokens": 200,
        "tools": [BASH_TOOL],
        "messages": _ask("Please use bash to run `ls -la /tmp`"),
    }
    if stream:
        with anthropic_client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            msg = s.get_final_message()
    else:
        msg = anthropic_client.messages.create(**kwargs)  # type: ignore[arg-type]
    kinds = [b.type for b in msg.content]
    assert kinds == ["text", "tool_use"]
    tool = msg.content[1]
    assert tool.type == "tool_use"
    assert tool.name == "bash" and tool.input == {"command": "ls -la /tmp"}
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_block(anthropic_client: anthropic.Anthropic, stream: bool) -> None:
    kwargs = {
        "model": MODEL,
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": _ask("Count to 3"),
    }
    if stream:
        with anthropic_client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            msg = s.get_final_message()
    else:
        msg = anthropic_client.messages.create(**kwargs)  # type: ignore[arg-type]
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert msg.content[1].text == "1, 2, 3"  # type: ignore[union-attr]


@pytest.mark.parametrize("chunking", ["random:1", "random:2", "random:99"])
@pytest.mark.parametrize("line_ending", ["lf", "crlf", "cr"])
def test_unicode_through_random_chunking(
    anthropic_client: anthropic.Anthropic, chunking: str, line_ending: str
) -> None:
    """Splits inside UTF-8 sequences and between \\r and \\n reach the SDK intact."""
    with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=_ask("Say something with unicode"),
        extra_headers={
            "x-mock-chunking": chunking,
            "x-mock-chunk-delay-ms": "1",
            "x-mock-line-ending": line_ending,
        },
    ) as s:
        msg = s.get_final_message()
    assert msg.content[0].text == "héllo wörld — 你好 🌍 ✓"  # type: ignore[union-attr]


def test_upstream_overloaded_reaches_client(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        anthropic_client.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=_ask("Count to 3"),
            extra_headers={"x-mock-error": "overloaded"},
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_midstream_error_event_raises(anthropic_client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        anthropic_client.messages.stream(
            model=MODEL,
            max_tokens=50,
            messages=_ask("Count to 3"),
            extra_headers={"x-mock-error": "overloaded-midstream"},
        ) as s,
    ):
        s.get_final_message()


def test_bad_gateway_key_is_authentication_error(base_url: str) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=_ask("hi"))
    assert info.value.status_code == 401
    assert "sk-wrong" not in str(info.value)


def test_request_summary_counts_the_streams_events(
    anthropic_client: anthropic.Anthropic, log_dir: Path
) -> None:
    """One JSON line per request in the ext_proc log, written after the request's state
    is released: it still counts the events that went through the policies."""
    request_id = "summary-events-check-1"
    with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=50,
        messages=_ask("Count to 3"),
        extra_headers={"x-request-id": request_id},
    ) as stream:
        assert stream.get_final_text() == "1, 2, 3"

    def summary() -> dict[str, object] | None:
        for line in (log_dir / "extproc.log").read_text().splitlines():
            if f'"id":"{request_id}"' in line:
                found: dict[str, object] = json.loads(line[line.index("{") :])
                return found
        return None

    wait_for(lambda: summary() is not None, "the request's summary line")
    line = summary()
    assert line is not None
    assert line["stream"] is True and line["mode"] == "sse" and line["status"] == 200
    assert isinstance(line["events"], int) and line["events"] >= 8
