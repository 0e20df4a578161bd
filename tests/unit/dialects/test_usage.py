"""Each API's usage report: which stream events may carry one (a look without parsing)
and the token counts read from it or from a whole response."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from extproc.core.usage import Usage
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_EMBEDDINGS, OPENAI_RESPONSES
from extproc.sse import SSEFramer

ANTHROPIC_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "usage": {
            "input_tokens": 12,
            "output_tokens": 1,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 3,
        },
    },
}
ANTHROPIC_DELTA = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 42}}
CHAT_USAGE = {
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
}
RESPONSES_DONE = {
    "type": "response.completed",
    "response": {
        "usage": {
            "input_tokens": 7,
            "output_tokens": 8,
            "input_tokens_details": {"cached_tokens": 1},
        }
    },
}


def frame(payload: Any, event: str | None = None) -> Any:
    raw = (f"event: {event}\n" if event else "").encode() + b"data: " + orjson.dumps(payload)
    [made] = SSEFramer().feed(raw + b"\n\n")
    return made


def test_anthropic_usage_from_message_start_then_delta() -> None:
    start, delta = frame(ANTHROPIC_START, "message_start"), frame(ANTHROPIC_DELTA, "message_delta")
    assert ANTHROPIC.reports_usage(start) and ANTHROPIC.reports_usage(delta)
    assert not ANTHROPIC.reports_usage(frame({"type": "ping"}, "ping"))
    # Without event lines, the payload's own type says.
    assert ANTHROPIC.reports_usage(frame(ANTHROPIC_DELTA))
    total = (
        Usage().merged(ANTHROPIC.usage(ANTHROPIC_START)).merged(ANTHROPIC.usage(ANTHROPIC_DELTA))
    )
    assert total == Usage(12, 42, 5, 3)
    whole = {"type": "message", "usage": {"input_tokens": 3, "output_tokens": 4}}
    assert ANTHROPIC.usage(whole) == Usage(3, 4)


def test_chat_usage_only_from_the_chunk_that_has_it() -> None:
    assert OPENAI_CHAT.reports_usage(frame({"choices": [], **CHAT_USAGE}))
    assert not OPENAI_CHAT.reports_usage(frame({"choices": [{"delta": {}}], "usage": None}))
    # OpenAI's prompt_tokens include the cached ones: 7 of the 9 were not read from cache.
    assert OPENAI_CHAT.usage(CHAT_USAGE) == Usage(9, 4, 2, input_includes_cache=True)
    assert Usage(9, 4, 2, input_includes_cache=True).uncached_input_tokens == 7
    assert Usage(9, 4, 2).uncached_input_tokens == 9  # Anthropic's leave them out already
    assert OPENAI_EMBEDDINGS.usage({"usage": {"prompt_tokens": 5, "total_tokens": 5}}) == Usage(
        5, input_includes_cache=True
    )


def test_responses_usage_from_the_terminal_event() -> None:
    done = frame(RESPONSES_DONE, "response.completed")
    assert OPENAI_RESPONSES.reports_usage(done)
    assert not OPENAI_RESPONSES.reports_usage(
        frame({"type": "response.created"}, "response.created")
    )
    assert OPENAI_RESPONSES.usage(RESPONSES_DONE) == Usage(7, 8, 1, input_includes_cache=True)
    whole = RESPONSES_DONE["response"]
    assert OPENAI_RESPONSES.usage(whole) == Usage(7, 8, 1, input_includes_cache=True)


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS])
@pytest.mark.parametrize(
    "junk",
    [None, [], "usage", {"usage": None}, {"usage": {"input_tokens": -1, "prompt_tokens": True}},
     {"message": "x", "response": 3, "usage": {"output_tokens": "9"}}],
)  # fmt: skip
def test_junk_gives_no_counts(dialect: Dialect, junk: Any) -> None:
    usage = dialect.usage(junk)
    assert usage is None or dataclasses.replace(usage, input_includes_cache=False) == Usage()
