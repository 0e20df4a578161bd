"""The Anthropic stream grammar checker (extproc/dialects/anthropic/validator.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from extproc.dialects.anthropic.validator import StreamValidator
from tests.helpers.dialects import MESSAGE, Event, anthropic_sse, anthropic_stream, ev, splice
from tests.helpers.streams import frames


def anthropic_violations(events: list[Event]) -> list[str]:
    validator = StreamValidator()
    for kind, payload in events:
        validator.feed_event(kind, payload)
    return validator.finish()


def frame_violations(raw: bytes) -> list[str]:
    """The same check fed SSE frames, as `validate_streams` feeds it."""
    validator = StreamValidator()
    for frame in frames(raw):
        validator.feed(frame)
    return validator.finish()


def _shift_blocks_from(events: list[Event], first: int) -> list[Event]:
    for _, payload in events:
        if payload.get("index", -1) >= first:
            payload["index"] += 1
    return events


THINK = {"type": "thinking_delta", "thinking": "x"}
ANTHROPIC_BROKEN: dict[str, tuple[Callable[[], list[Event]], str]] = {
    "duplicate message_start": (
        lambda: splice(anthropic_stream(), 2, ev("message_start", message=MESSAGE), drop=0),
        "duplicate message_start",
    ),
    "skipped index": (
        lambda: _shift_blocks_from(anthropic_stream(), 1),
        "content_block_start index 2, expected 1",
    ),
    "missing stop": (
        lambda: splice(anthropic_stream(), 5),
        "content_block_start 1 while block 0 is still open",
    ),
    "text after tool_use": (
        lambda: anthropic_stream(("thinking", "tool_use", "text")),
        "text block 2 after a tool_use block",
    ),
    "stop_reason tool_use without tool_use": (
        lambda: anthropic_stream(("text",)),
        "stop_reason is tool_use but no tool_use block was sent",
    ),
    "missing message_stop": (lambda: anthropic_stream()[:-1], "without message_stop"),
    "delta of the wrong kind": (
        lambda: splice(anthropic_stream(), 7, ev("content_block_delta", index=1, delta=THINK)),
        "thinking_delta for text block 1",
    ),
    "tool input not JSON": (
        lambda: splice(anthropic_stream(), 12),
        "tool_use block 2 input is not valid JSON",
    ),
    "duplicate message_delta": (
        lambda: [*anthropic_stream()[:-1], *anthropic_stream()[-2:]],
        "duplicate message_delta",
    ),
    "event after message_stop": (lambda: [*anthropic_stream(), ev("ping")], "after message_stop"),
    "event before message_start": (
        lambda: [ev("ping"), *anthropic_stream()],
        "ping before message_start",
    ),
}


def test_anthropic_valid_stream_has_no_violations() -> None:
    assert anthropic_violations(anthropic_stream()) == []
    assert anthropic_violations(anthropic_stream(("text",), "end_turn")) == []
    with_unknown = [*anthropic_stream()[:3], ev("future_event", x=1), *anthropic_stream()[3:]]
    assert anthropic_violations(with_unknown) == []
    error = ev("error", error={"type": "overloaded_error", "message": "Overloaded"})
    assert anthropic_violations([*anthropic_stream()[:5], error]) == []
    assert anthropic_violations(anthropic_stream()[:5]) == ["stream ended without message_stop"]


@pytest.mark.parametrize("case", sorted(ANTHROPIC_BROKEN))
def test_anthropic_validator_reports_exactly_the_broken_invariant(case: str) -> None:
    build, expected = ANTHROPIC_BROKEN[case]
    violations = anthropic_violations(build())
    assert len(violations) == 1, violations
    assert expected in violations[0]
    assert frame_violations(anthropic_sse(build())) == violations


def test_frames_are_checked_like_events() -> None:
    raw = anthropic_sse(anthropic_stream())
    assert frame_violations(raw) == []
    # Comments and events without data carry nothing to check.
    with_comments = b": keep-alive\n\n" + raw.replace(b"\n\n", b"\n\n: ping\n\n", 3)
    assert frame_violations(with_comments) == []
    # A known event whose data is not JSON is reported, and a bare ping is fine.
    broken = raw.replace(b'data: {"type":"message_stop"}', b"data: {oops")
    assert frame_violations(broken) == [
        "message_stop event without JSON data",
        "stream ended without message_stop",
    ]
    ping = raw.replace(b'data: {"type":"ping"}', b"data: not json")
    assert frame_violations(ping) == []


def test_event_name_and_payload_type_must_agree() -> None:
    events = anthropic_stream()
    events[1] = ("ping", {"type": "pong"})
    violations = anthropic_violations(events)
    assert violations[0] == "event 'ping' has data of type 'pong'"
    assert all("ping" in v for v in violations)


def test_empty_stream_is_a_violation() -> None:
    assert StreamValidator().finish() == ["empty stream"]
    assert frame_violations(b"") == ["empty stream"]
