"""The OpenAI chat completions stream grammar checker
(extproc/dialects/openai/validator.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from extproc.dialects.openai.validator import StreamValidator
from tests.helpers.dialects import USAGE_CHUNK, openai_chunks, openai_sse, splice
from tests.helpers.dialects import call_delta as call
from tests.helpers.dialects import openai_chunk as chunk
from tests.helpers.streams import frames


def openai_violations(chunks: list[Any], expect_usage: bool = True) -> list[str]:
    validator = StreamValidator(expect_usage=expect_usage)
    for item in chunks:
        validator.feed_data(item if isinstance(item, str) else orjson.dumps(item).decode())
    return validator.finish()


def frame_violations(raw: bytes, expect_usage: bool = True) -> list[str]:
    """The same check fed SSE frames, as `validate_streams` feeds it."""
    validator = StreamValidator(expect_usage=expect_usage)
    for frame in frames(raw):
        validator.feed(frame)
    return validator.finish()


OPENAI_BROKEN: dict[str, tuple[Callable[[], list[Any]], str]] = {
    "missing [DONE]": (openai_chunks, "stream ended without [DONE]"),
    "two finish_reasons": (
        lambda: [*openai_chunks()[:-1], chunk({}, "stop"), openai_chunks()[-1], "[DONE]"],
        "choice 0: second finish_reason",
    ),
    "tool call index gap": (
        lambda: [*openai_chunks(tool_index=2), "[DONE]"],
        "tool call index 2, expected 1",
    ),
    "bad JSON arguments": (
        lambda: [*openai_chunks(args='{"location": "Par'), "[DONE]"],
        "tool call 0 arguments are not valid JSON",
    ),
    "missing role": (
        lambda: [*splice(openai_chunks(), 0, chunk(call(0, "", "x"))), "[DONE]"],
        "first delta has role None",
    ),
    "tool_calls finish without tool calls": (
        lambda: [chunk({"role": "assistant"}), chunk({}, "tool_calls"), USAGE_CHUNK, "[DONE]"],
        "finish_reason tool_calls without tool calls",
    ),
    "missing usage chunk": (lambda: [*openai_chunks()[:-1], "[DONE]"], "no usage chunk"),
    "content after finish_reason": (
        lambda: [*openai_chunks()[:-1], chunk({"content": "x"}), openai_chunks()[-1], "[DONE]"],
        "delta after finish_reason",
    ),
    "data after [DONE]": (lambda: [*openai_chunks(), "[DONE]", "[DONE]"], "duplicate [DONE]"),
    "later delta repeats id": (
        lambda: [*splice(openai_chunks(), 2, chunk(call(0, 'ation": "Paris"}', "y"))), "[DONE]"],
        "later delta repeats id",
    ),
}


def test_openai_valid_streams_have_no_violations() -> None:
    assert openai_violations([*openai_chunks(), "[DONE]"]) == []
    text = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"})]
    assert openai_violations([*text, chunk({}, "stop"), "[DONE]"], expect_usage=False) == []
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    assert openai_violations([*openai_chunks()[:3], error, "[DONE]"]) == []


@pytest.mark.parametrize("case", sorted(OPENAI_BROKEN))
def test_openai_validator_reports_exactly_the_broken_invariant(case: str) -> None:
    build, expected = OPENAI_BROKEN[case]
    violations = openai_violations(build())
    assert len(violations) == 1, violations
    assert expected in violations[0]
    assert frame_violations(openai_sse(build())) == violations


def test_frames_are_checked_like_data() -> None:
    raw = openai_sse([*openai_chunks(), "[DONE]"])
    assert frame_violations(raw) == []
    # Comments carry no data and are not checked.
    assert frame_violations(b": keep-alive\n\n" + raw) == []
    broken = frame_violations(raw.replace(b"data: [DONE]", b"data: {oops"))
    assert len(broken) == 2 and broken[0].startswith("data is not valid JSON: ")
    assert broken[1] == "stream ended without [DONE]"


def test_data_after_an_error_and_after_done() -> None:
    error = {"error": {"message": "x", "type": "server_error"}}
    late = chunk({"content": "late"})
    assert openai_violations([*openai_chunks()[:3], error, late, "[DONE]"]) == [
        "data after an in-stream error"
    ]
    assert openai_violations([*openai_chunks(), "[DONE]", late])[0] == "data after [DONE]"
    assert openai_violations(["[DONE]"]) == [
        "stream has no chunks",
        "usage was requested but no usage chunk was sent",
    ]
